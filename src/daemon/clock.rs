//! The daemon's only clock. The engine has none; the daemon reads this one. `Wall` in
//! production; `Scaled` lets the demo play two weeks of a story in a minute.

use std::time::Duration;

use chrono::Utc;

use belofte_core::domain::Instant;

#[derive(Debug, Clone)]
pub enum Clock {
    Wall,
    /// Set by hand (tests): time stands still until `set` moves it.
    Manual(std::sync::Arc<std::sync::Mutex<Instant>>),
    /// Virtual time running `factor` times faster than the wall clock from `virtual_origin`,
    /// once started (`resume`); until then it stands at `virtual_origin`.
    Scaled { real_origin: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>, virtual_origin: Instant, factor: f64 },
}

impl Clock {
    /// A scaled clock standing still at `virtual_origin` until `resume`.
    pub fn scaled(virtual_origin: Instant, factor: f64) -> Clock {
        Clock::Scaled { real_origin: Default::default(), virtual_origin, factor: factor.max(1.0) }
    }

    /// Start a scaled clock running (the demo does so once the consumer has its partitions).
    pub fn resume(&self) {
        if let Clock::Scaled { real_origin, .. } = self {
            let mut origin = real_origin.lock().unwrap_or_else(|e| e.into_inner());
            origin.get_or_insert_with(std::time::Instant::now);
        }
    }

    pub fn manual(start: Instant) -> Clock {
        Clock::Manual(std::sync::Arc::new(std::sync::Mutex::new(start)))
    }

    /// Move a manual clock (never backwards); other clocks ignore it.
    pub fn set(&self, t: Instant) {
        if let Clock::Manual(m) = self {
            let mut now = m.lock().unwrap_or_else(|e| e.into_inner());
            if t > *now {
                *now = t;
            }
        }
    }

    pub fn now(&self) -> Instant {
        match self {
            Clock::Wall => Utc::now(),
            Clock::Manual(m) => *m.lock().unwrap_or_else(|e| e.into_inner()),
            Clock::Scaled { real_origin, virtual_origin, factor } => {
                let origin = *real_origin.lock().unwrap_or_else(|e| e.into_inner());
                let real = origin.map_or(0.0, |o| o.elapsed().as_secs_f64()) * factor;
                *virtual_origin + chrono::Duration::microseconds((real * 1e6) as i64)
            }
        }
    }

    /// How long to sleep (really) until the clock shows `t`.
    pub fn until(&self, t: Instant) -> Duration {
        let ahead = (t - self.now()).to_std().unwrap_or(Duration::ZERO);
        match self {
            Clock::Wall => ahead,
            // Nobody knows when the test moves the clock: look again soon.
            Clock::Manual(_) => ahead.min(Duration::from_millis(5)),
            Clock::Scaled { factor, .. } => ahead.div_f64(*factor),
        }
    }

    /// A duration in the clock's time, as real time (backoffs and polls in the demo).
    pub fn real(&self, d: Duration) -> Duration {
        match self {
            Clock::Wall => d,
            Clock::Manual(_) => d.min(Duration::from_millis(20)),
            Clock::Scaled { factor, .. } => d.div_f64(*factor),
        }
    }
}
