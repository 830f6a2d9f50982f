//! `belofte broker`: a Kafka for development, so that one or several `belofte run` can be
//! started on a laptop without installing one. librdkafka's mock cluster (the one the tests
//! and `belofte demo` use) with every configured topic created, until SIGINT or SIGTERM.
//!
//! The mock cluster always listens on an ephemeral loopback port: librdkafka binds it to
//! `127.0.0.1:0` and has no setting for the address (`rdkafka_mock.c`,
//! `rd_kafka_mock_broker_new`). So the fixed address (`--listen`) is served by a TCP
//! forwarder in front of it. A client only bootstraps there: the metadata it gets back
//! advertises the mock broker's own address (`127.0.0.1:<port>`), and it connects to that for
//! everything else. Both are on loopback, so this serves clients on this machine only.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

use belofte::daemon::stop_signal;
use belofte::kafka::mock::EmbeddedBroker;
use belofte::kafka::KafkaConfig;

/// The address clients are told to use when none is given: Kafka's own port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9092";

/// Serves the embedded broker on `listen` with `kafka`'s topics, `partitions` each, until a
/// stop signal.
pub async fn run(listen: SocketAddr, partitions: i32, kafka: &KafkaConfig) -> Result<()> {
    // The fixed address first: when it is taken (a Kafka already running?) nothing starts.
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}"))?;
    let broker = EmbeddedBroker::start(partitions).context("embedded Kafka broker")?;
    let topics = kafka.all_topics();
    broker.create_topics(&topics).context("creating the topics")?;
    let advertised: SocketAddr = broker
        .bootstrap()
        .parse()
        .with_context(|| format!("the mock cluster's address {:?}", broker.bootstrap()))?;

    // Installed before we announce ourselves, so that a signal right after the line below
    // stops us cleanly instead of killing the process (the handlers are set on first poll).
    let stop = stop_signal();
    tokio::pin!(stop);
    if tokio::time::timeout(Duration::ZERO, &mut stop).await.is_ok() {
        return Ok(());
    }
    println!("belofte broker listening on {listen} (kafka.brokers = \"{listen}\")");
    println!("  topics:     {} ({partitions} partitions each)", topics.join(", "));
    println!("  advertised: {advertised} (clients reconnect there after bootstrap; this machine only)");
    println!("  records are kept in memory only; Ctrl-C stops the broker");

    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(forward(client, advertised));
                }
                Err(e) => {
                    // Out of file descriptors, say: wait instead of spinning on the error.
                    tracing::warn!(error = %e, "belofte broker: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    println!("belofte broker stopped");
    Ok(())
}

/// Copies bytes both ways between a client and the mock broker until either side closes.
async fn forward(mut client: TcpStream, broker: SocketAddr) {
    let mut upstream = match TcpStream::connect(broker).await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(error = %e, %broker, "belofte broker: cannot reach the mock cluster");
            return;
        }
    };
    // Kafka requests are small and answered one by one: Nagle would only add delay.
    for stream in [&client, &upstream] {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "belofte broker: TCP_NODELAY");
        }
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        // A client that goes away mid-request resets the connection: nothing to act on.
        tracing::debug!(error = %e, "belofte broker: connection ended");
    }
}
