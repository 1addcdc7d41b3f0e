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

/// How often the realtime-to-monotonic offset is read again while frames flow: a
/// reading costs three clock reads (system calls on user-mode-linux, which has no
/// vDSO), and is needed only to narrow the estimate and to notice a set clock.
const READ_EVERY: Nanos = 10_000_000;

/// An estimate wider than this is read again at once. One reading on user-mode-linux
/// spans two system calls, 28 to 40 us on a quiet host; on bare metal about 1 us.
const WIDE: i64 = 50_000;

/// A stamp claiming a frame waited longer than this is not believed (a step of the
/// realtime clock since the offset was read): the frame arrived when it was read.
const LONGEST_WAIT: Nanos = 1_000_000_000;

/// Turns kernel receive stamps (CLOCK_REALTIME) into monotonic arrival times.
///
/// CLOCK_REALTIME minus CLOCK_MONOTONIC changes only when the realtime clock is set:
/// NTP and adjtime(3) slew both clocks alike (clock_gettime(2); the timekeeper computes
/// realtime as monotonic plus `offs_real`, ktime_get_with_offset()). Each reading (a
/// realtime read between two monotonic reads) bounds the difference, so the estimate
/// is the intersection of the readings since the clock was last set, which only
/// narrows; a reading outside it means the clock was set, and starts it again. A
/// single reading was not enough: on user-mode-linux, with the host's cores busy,
/// every clock read sometimes took hundreds of microseconds, and so did each of four
/// readings in a row.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// The difference lies in `lo..=hi` (nanoseconds); read at monotonic `at`.
    offset: Option<Offset>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offset {
    lo: i64,
    hi: i64,
    at: Nanos,
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
            Some(o) if read.saturating_sub(o.at) < READ_EVERY => o,
            _ => {
                // A wide estimate (a first reading, or one after the clock was set,
                // taken across a preemption) is read again at once, up to four times:
                // arrivals would carry its width until the next reading.
                let mut offset = self.learn(reading());
                for _ in 1..4 {
                    if offset.hi - offset.lo <= WIDE {
                        break;
                    }
                    offset = self.learn(reading());
                }
                offset
            }
        };
        // The smallest difference the readings allow: the latest arrival they allow.
        // netem counts from the enqueue, which cannot come before the stamp; an arrival
        // taken early by the estimate's error would let a packet leave early.
        let mono = real - offset.lo;
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

    /// Adds a reading: the realtime clock read `realtime` between the monotonic reads
    /// `before` and `after`.
    fn learn(&mut self, (before, realtime, after): (i64, i64, i64)) -> Offset {
        let reading = Offset {
            lo: realtime - after,
            hi: realtime - before,
            at: after.max(0) as Nanos,
        };
        let met = self.offset.and_then(|o| {
            let (lo, hi) = (o.lo.max(reading.lo), o.hi.min(reading.hi));
            (lo <= hi).then_some(Offset {
                lo,
                hi,
                at: reading.at,
            })
        });
        let offset = met.unwrap_or(reading);
        self.offset = Some(offset);
        offset
    }
}

/// A realtime read between two monotonic reads.
fn reading() -> (i64, i64, i64) {
    let before = read(libc::CLOCK_MONOTONIC);
    let real = realtime();
    let after = read(libc::CLOCK_MONOTONIC);
    (before, real, after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_moves_the_arrival_back_by_the_wait_and_never_forward() {
        let mut stamps = Stamps::default();
        let read = now();
        let (before, real, after) = reading();
        let offset = real - (before + after) / 2;
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
    fn readings_narrow_the_offset_until_the_clock_is_set() {
        // The true offset: realtime = monotonic + 10^12.
        const TRUE: i64 = 1_000_000_000_000;
        let mut stamps = Stamps::default();
        // A wide reading (800 us between the monotonic reads), then a narrow one.
        let o = stamps.learn((1_000_000, 1_000_700 + TRUE, 1_800_000));
        assert_eq!((o.lo, o.hi), (TRUE - 799_300, TRUE + 700));
        let o = stamps.learn((5_000_000, 5_010_000 + TRUE, 5_040_000));
        assert_eq!((o.lo, o.hi), (TRUE - 30_000, TRUE + 700));
        // A wide one later keeps what the narrow one told; one cutting a side narrows.
        let o = stamps.learn((9_000_000, 9_000_000 + TRUE, 9_800_000));
        assert_eq!((o.lo, o.hi), (TRUE - 30_000, TRUE));
        assert!(o.lo <= TRUE && TRUE <= o.hi);
        // The arrival uses the smallest offset the readings allow: never early.
        stamps.offset = Some(Offset { at: now(), ..o });
        let read = now();
        let stamp = (read - 2_000_000) as i64 + TRUE;
        assert_eq!(stamps.arrival(Some(stamp), read), read - 2_000_000 + 30_000);
        // The clock set forward by a second: the next reading is outside, and alone.
        let o = stamps.learn((20_000_000, 20_000_000 + TRUE + 1_000_000_000, 20_020_000));
        assert_eq!(
            (o.lo, o.hi),
            (TRUE + 1_000_000_000 - 20_000, TRUE + 1_000_000_000)
        );
    }

    #[test]
    fn the_offset_is_read_again_once_it_is_old() {
        let mut stamps = Stamps::default();
        stamps.arrival(Some(0), now());
        let first = stamps.offset.unwrap().at;
        stamps.arrival(Some(0), first + READ_EVERY - 1);
        assert_eq!(stamps.offset.unwrap().at, first);
        std::thread::sleep(std::time::Duration::from_millis(1));
        stamps.arrival(Some(0), first + READ_EVERY);
        assert!(stamps.offset.unwrap().at >= first + 1_000_000);
    }
}
