use std::io::BufRead;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let settings = belofte::settings::load(std::path::Path::new("config")).unwrap();
    let lines: Vec<Vec<u8>> = std::io::BufReader::new(std::fs::File::open(&path).unwrap()).split(b'\n').map(|l| l.unwrap()).collect();
    let t = std::time::Instant::now();
    let evs: Vec<_> = lines.iter().map(|l| belofte::core::event::decode(l).unwrap()).collect();
    eprintln!("decode: {:?} for {}", t.elapsed(), evs.len());
    let t = std::time::Instant::now();
    let mut w = belofte::core::world::World::new(&settings.policy);
    let mut n = 0usize;
    let mut clock = evs[0].time;
    for e in evs {
        clock = clock.max(e.time);
        n += w.advance(clock).len();
        n += w.ingest(e, clock).unwrap().1.len();
    }
    n += w.advance(clock + chrono::Duration::days(7)).len();
    eprintln!("world: {:?} decisions {}", t.elapsed(), n);
}
