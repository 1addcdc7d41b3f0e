//! The engine's clock: CLOCK_MONOTONIC nanoseconds, and the arrival time of a frame
//! taken from the kernel's receive stamp rather than from when the engine read it.
//!
//! A frame enters the hub when the sender's veth hands it over (veth_xmit() calls
//! netif_rx() in the sender's system call, which stamps it when any socket asked for
//! stamps: net_timestamp_check()). The engine reads it when its thread next runs. On a
//! busy machine that can be milliseconds later (in a user-mode-linux lane, whose
//! single CPU the sender, the engine and the receiver share, up to 13 ms were
//! measured), and a delay or a rate counted from the read would carry the engine's
//! scheduling into every packet behind it: netem counts from the enqueue, in the
//! sender's context (netem_enqueue()), and so does the model when it is handed the
//! stamp.

use super::model::Nanos;

/// The current CLOCK_MONOTONIC time in nanoseconds.
pub(crate) fn now() -> Nanos {
    read(libc::CLOCK_MONOTONIC) as Nanos
}

/// CLOCK_REALTIME in nanoseconds, the clock of the kernel's receive timestamps.
pub(crate) fn realtime() -> i64 {
    read(libc::CLOCK_REALTIME)
}

fn read(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; both clocks read here always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// How long one realtime-to-monotonic offset is used before it is read again. NTP
/// slews CLOCK_REALTIME by at most 500 ppm (adjtimex(2)), so an offset drifts at most
/// 5 us in this time; reading it more often would cost three clock reads (system calls
/// on user-mode-linux, which has no vDSO) for nothing.
const OFFSET_LIFETIME: Nanos = 10_000_000;

/// An offset whose two monotonic reads were further apart than this (a preemption in
/// between) is read again, up to four times; then the narrowest is used.
const OFFSET_TOLERANCE: i64 = 20_000;

/// A stamp claiming a frame waited longer than this is not believed (a step of the
/// realtime clock since the offset was read): the frame arrived when it was read.
const LONGEST_WAIT: Nanos = 1_000_000_000;

/// Turns kernel receive stamps (CLOCK_REALTIME) into monotonic arrival times.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// CLOCK_REALTIME minus CLOCK_MONOTONIC, and the monotonic time it was read.
    offset: Option<(i64, Nanos)>,
}

impl Stamps {
    /// When a frame read at `read` (monotonic) arrived, from its kernel stamp `real`
    /// (realtime nanoseconds). Never after `read`; `read` itself without a stamp or
    /// with one not to be believed.
    pub(crate) fn arrival(&mut self, real: Option<i64>, read: Nanos) -> Nanos {
        let Some(real) = real else {
            return read;
        };
        let offset = match self.offset {
            Some((offset, at)) if read.saturating_sub(at) < OFFSET_LIFETIME => offset,
            _ => {
                let offset = read_offset();
                self.offset = Some((offset, read));
                offset
            }
        };
        let mono = real - offset;
        if mono < 0 {
            return read;
        }
        let waited = read.saturating_sub(mono as Nanos);
        if waited > LONGEST_WAIT {
            read
        } else {
            read - waited
        }
    }
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC: a realtime read bracketed by two monotonic
/// reads, against their midpoint.
fn read_offset() -> i64 {
    let mut best: Option<(i64, i64)> = None;
    for _ in 0..4 {
        let before = read(libc::CLOCK_MONOTONIC);
        let real = realtime();
        let after = read(libc::CLOCK_MONOTONIC);
        let gap = after - before;
        if best.is_none_or(|(narrowest, _)| gap < narrowest) {
            best = Some((gap, real - (before + gap / 2)));
        }
        if gap <= OFFSET_TOLERANCE {
            break;
        }
    }
    best.map_or(0, |(_, offset)| offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_moves_the_arrival_back_by_the_wait_and_never_forward() {
        let mut stamps = Stamps::default();
        let read = now();
        let offset = read_offset();
        // Stamped 3 ms before the read.
        let at = stamps.arrival(Some(read as i64 - 3_000_000 + offset), read);
        let error = (read - 3_000_000).abs_diff(at);
        assert!(error < 1_000_000, "arrival {error} ns off");
        // A stamp after the read (the offset's error) is the read.
        assert_eq!(
            stamps.arrival(Some(read as i64 + 5_000_000 + offset), read),
            read
        );
        // No stamp, or one from a realtime clock stepped far away.
        assert_eq!(stamps.arrival(None, read), read);
        assert_eq!(
            stamps.arrival(Some(read as i64 - 5_000_000_000 + offset), read),
            read
        );
    }

    #[test]
    fn the_offset_is_read_again_once_it_is_old() {
        let mut stamps = Stamps::default();
        let read = now();
        stamps.arrival(Some(0), read);
        let first = stamps.offset.unwrap().1;
        stamps.arrival(Some(0), read + OFFSET_LIFETIME - 1);
        assert_eq!(stamps.offset.unwrap().1, first);
        stamps.arrival(Some(0), read + OFFSET_LIFETIME);
        assert_eq!(stamps.offset.unwrap().1, read + OFFSET_LIFETIME);
    }
}
