//! Wrong console tokens, counted per client address. A token of 16 characters or more is
//! not guessed by trying, but an address that keeps trying is someone to stop and to see:
//! after `[console] wrong_tokens_per_minute` wrong tokens in one minute, that address gets
//! 429 with `Retry-After` — even with the right token — until its minute is over. Other
//! addresses are not affected (behind a proxy every client shares its address: then the
//! whole console waits the minute out, which a person can, and a guesser gains nothing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a count lasts.
const WINDOW: Duration = Duration::from_secs(60);
/// More addresses than this and the ended windows are dropped (a flood of addresses cannot
/// grow the map without end).
const PRUNE_AT: usize = 10_000;

pub struct Throttle {
    /// Wrong tokens an address may give per window; 0 counts nothing.
    limit: u32,
    /// Per address: when its window began, and its wrong tokens in it.
    wrong: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Throttle {
    pub fn new(limit: u32) -> Throttle {
        Throttle { limit, wrong: Mutex::new(HashMap::new()) }
    }

    /// How long `addr` must wait before it may give a token again, if it has used up its
    /// wrong tries.
    pub fn wait(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        let (began, count) = wrong.get(&addr)?;
        let left = WINDOW.checked_sub(now.saturating_duration_since(*began)).filter(|d| !d.is_zero())?;
        (*count >= self.limit).then_some(left)
    }

    /// `addr` gave a wrong token at `now`. True when this one used up its tries (the moment
    /// to say so in the log, once per window).
    pub fn note_wrong(&self, addr: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        if wrong.len() >= PRUNE_AT {
            wrong.retain(|_, (began, _)| now.saturating_duration_since(*began) < WINDOW);
        }
        let entry = wrong.entry(addr).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 == self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_address_that_keeps_guessing_waits_out_its_minute_and_others_do_not() {
        let t = Throttle::new(3);
        let start = Instant::now();
        assert!(!t.note_wrong(addr(1), start));
        assert!(!t.note_wrong(addr(1), start));
        assert_eq!(t.wait(addr(1), start), None, "two wrong tokens: still free to try");
        assert!(t.note_wrong(addr(1), start), "the third uses up the tries");
        let later = start + Duration::from_secs(20);
        assert_eq!(t.wait(addr(1), later), Some(Duration::from_secs(40)));
        assert_eq!(t.wait(addr(2), later), None, "another address is not affected");
        assert_eq!(t.wait(addr(1), start + WINDOW), None, "the minute is over");
        assert!(!t.note_wrong(addr(1), start + WINDOW), "and the count starts again");
    }

    #[test]
    fn a_limit_of_zero_counts_nothing() {
        let t = Throttle::new(0);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(!t.note_wrong(addr(1), now));
        }
        assert_eq!(t.wait(addr(1), now), None);
    }
}
