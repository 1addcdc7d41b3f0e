//! Packet-scheduler time units, and iproute2's rate and size arithmetic.
//!
//! HTB and TBF carry times in *psched ticks*, whose length the kernel publishes in
//! `/proc/net/psched`: four hex words, `NSEC_PER_USEC`, `PSCHED_TICKS2NS(1)`, `1000000`
//! and `NSEC_PER_SEC / hrtimer_resolution`. Every kernel since 2.6.31 prints
//! `000003e8 00000040 000f4240 3b9aca00`: one tick is 64 ns and the "HZ" that tc divides
//! rates by is 10^9 (high-resolution timers). [`Psched::MODERN`] holds those values;
//! [`Psched::read`] reads the real file and falls back to them.
//!
//! The arithmetic follows iproute2's `tc/tc_core.c` (`tc_core_init`,
//! `tc_calc_xmittime`, `tc_calc_xmitsize`, `tc_calc_rtable`) and `lib/utils.c`
//! (`__get_hz`) operation for operation, in `f64`, so the values linkem sends equal the
//! ones `tc` sends (checked against captures in `linkem/tests/tc_fixtures.rs`).

use std::io;
use std::path::Path;

use crate::error::Error;

/// Where the kernel publishes its packet-scheduler clock.
pub const PROC_NET_PSCHED: &str = "/proc/net/psched";

/// iproute2's `TIME_UNITS_PER_SEC`: tc's times are microseconds.
const TIME_UNITS_PER_SEC: f64 = 1_000_000.0;

/// The `HZ` iproute2 falls back to when `/proc/net/psched` does not give one.
const FALLBACK_HZ: u32 = 100;

/// `TC_LINKLAYER_ETHERNET`, the link layer linkem declares in every rate spec.
///
/// Since Linux 3.11 the kernel ignores the rate tables (RTAB/CTAB) unless the rate
/// spec says its link layer is "unaware" (0); declaring Ethernet, as tc does, keeps the
/// tables optional and the kernel's own per-byte computation in charge.
pub const LINKLAYER_ETHERNET: u8 = 1;

/// The four words of `/proc/net/psched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Psched {
    /// First word: nanoseconds per microsecond (tc's `t2us`), 1000.
    pub t2us: u32,
    /// Second word: nanoseconds per tick (tc's `us2t`), 64.
    pub us2t: u32,
    /// Third word: the clock resolution tc assumes, 1000000.
    pub clock_res: u32,
    /// Fourth word: `NSEC_PER_SEC / hrtimer_resolution`, 10^9 with high-resolution
    /// timers; tc uses it as `HZ` when the third word is 1000000.
    pub hz_word: u32,
}

impl Default for Psched {
    fn default() -> Self {
        Psched::MODERN
    }
}

impl Psched {
    /// The values of every kernel since 2.6.31 with high-resolution timers.
    pub const MODERN: Psched = Psched {
        t2us: 1000,
        us2t: 64,
        clock_res: 1_000_000,
        hz_word: 1_000_000_000,
    };

    /// Parses the text of `/proc/net/psched` (four hexadecimal words).
    pub fn parse(text: &str) -> Option<Psched> {
        let mut words = text
            .split_whitespace()
            .map(|w| u32::from_str_radix(w, 16).ok());
        let psched = Psched {
            t2us: words.next()??,
            us2t: words.next()??,
            clock_res: words.next()??,
            hz_word: words.next()??,
        };
        (psched.t2us != 0 && psched.us2t != 0 && psched.clock_res != 0).then_some(psched)
    }

    /// Reads [`PROC_NET_PSCHED`]; [`Psched::MODERN`] when it is missing or unreadable.
    pub fn read() -> Psched {
        Psched::read_from(Path::new(PROC_NET_PSCHED)).unwrap_or(Psched::MODERN)
    }

    /// Reads a file in the format of `/proc/net/psched`.
    pub fn read_from(path: &Path) -> Result<Psched, Error> {
        let op = || format!("reading {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(op(), e))?;
        Psched::parse(&text).ok_or_else(|| {
            let bad = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected four hexadecimal words, got {:?}", text.trim()),
            );
            Error::io(op(), bad)
        })
    }

    /// Ticks per microsecond (tc's `tick_in_usec`, 15.625 on modern kernels).
    pub fn ticks_per_usec(&self) -> f64 {
        // tc_core_init's compatibility hack: a clock_res of 10^9 means a tick multiplier
        // of 1 whatever the first word says.
        let t2us = if self.clock_res == 1_000_000_000 {
            self.us2t
        } else {
            self.t2us
        };
        let clock_factor = f64::from(self.clock_res) / TIME_UNITS_PER_SEC;
        f64::from(t2us) / f64::from(self.us2t) * clock_factor
    }

    /// Microseconds to ticks (tc's `tc_core_time2tick`), not rounded.
    pub fn usec_to_ticks(&self, usec: f64) -> f64 {
        usec * self.ticks_per_usec()
    }

    /// Ticks to microseconds (tc's `tc_core_tick2time`), not rounded.
    pub fn ticks_to_usec(&self, ticks: f64) -> f64 {
        ticks / self.ticks_per_usec()
    }

    /// The `HZ` tc divides rates by for HTB's default burst (iproute2's `get_hz`).
    pub fn hz(&self) -> u32 {
        if self.clock_res == 1_000_000 && self.hz_word != 0 {
            self.hz_word
        } else {
            FALLBACK_HZ
        }
    }

    /// Ticks needed to send `size` bytes at `rate` bytes/s, rounded up
    /// (`tc_calc_xmittime`). Saturates at `u32::MAX`; a zero rate gives `u32::MAX`.
    pub fn xmittime(&self, rate: u64, size: u32) -> u32 {
        let usec = TIME_UNITS_PER_SEC * (f64::from(size) / rate as f64);
        // `as` saturates (and maps NaN to 0), where C's conversion would be undefined.
        self.usec_to_ticks(usec).ceil() as u32
    }

    /// Bytes sent in `ticks` at `rate` bytes/s, rounded down (`tc_calc_xmitsize`).
    pub fn xmitsize(&self, rate: u64, ticks: u32) -> u32 {
        (rate as f64 * self.ticks_to_usec(f64::from(ticks)) / TIME_UNITS_PER_SEC) as u32
    }

    /// The 256-entry rate table tc sends beside a rate spec (`tc_calc_rtable`, Ethernet
    /// link layer, automatic cell size): entry `i` is the transmit time in ticks of
    /// `(i + 1) << cell_log` bytes (at least `mpu`). `mtu` 0 means 2047.
    ///
    /// `rate` is the spec's 32-bit rate, so for rates of 2^32 bytes/s and more it is
    /// `u32::MAX`, as in tc. Returns the table and the cell log to put in the spec.
    pub fn rate_table(&self, rate: u32, mpu: u16, mtu: u32) -> ([u32; 256], u8) {
        let mtu = if mtu == 0 { 2047 } else { mtu };
        let mut cell_log = 0u8;
        while (mtu >> cell_log) > 255 {
            cell_log += 1;
        }
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let size = ((i as u32 + 1) << cell_log).max(u32::from(mpu));
            *slot = self.xmittime(u64::from(rate), size);
        }
        (table, cell_log)
    }
}

/// `struct tc_ratespec` (12 bytes), as tc fills it for an Ethernet link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateSpec {
    /// log2 of the rate table's cell size.
    pub cell_log: u8,
    /// The link layer ([`LINKLAYER_ETHERNET`]).
    pub linklayer: u8,
    /// Per-packet overhead in bytes.
    pub overhead: u16,
    /// Cell alignment; tc sets -1.
    pub cell_align: i16,
    /// Minimum packet unit in bytes.
    pub mpu: u16,
    /// Bytes per second, `u32::MAX` when the real rate goes in a 64-bit attribute.
    pub rate: u32,
}

impl RateSpec {
    /// Size of `struct tc_ratespec`.
    pub const LEN: usize = 12;

    /// The spec and rate table tc builds for `rate` bytes/s (mpu 0, no overhead).
    pub fn with_table(psched: &Psched, rate: u64, mtu: u32) -> (RateSpec, [u32; 256]) {
        let rate32 = rate32(rate);
        let (table, cell_log) = psched.rate_table(rate32, 0, mtu);
        let spec = RateSpec {
            cell_log,
            linklayer: LINKLAYER_ETHERNET,
            overhead: 0,
            cell_align: -1,
            mpu: 0,
            rate: rate32,
        };
        (spec, table)
    }

    /// Appends the 12 bytes of `struct tc_ratespec` (host byte order).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.cell_log);
        out.push(self.linklayer);
        out.extend_from_slice(&self.overhead.to_ne_bytes());
        out.extend_from_slice(&self.cell_align.to_ne_bytes());
        out.extend_from_slice(&self.mpu.to_ne_bytes());
        out.extend_from_slice(&self.rate.to_ne_bytes());
    }
}

/// The 32-bit rate field of a rate spec: the rate, or `u32::MAX` when it does not fit
/// (the kernel then reads the `*_RATE64` attribute).
pub fn rate32(rate: u64) -> u32 {
    u32::try_from(rate).unwrap_or(u32::MAX)
}

/// Whether a rate (bytes/s) needs its 64-bit attribute.
pub fn needs_rate64(rate: u64) -> bool {
    rate > u64::from(u32::MAX)
}

/// A rate table as the bytes of a `*_RTAB` / `*_CTAB` attribute.
pub fn table_bytes(table: &[u32; 256]) -> Vec<u8> {
    table.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_modern_file() {
        let p = Psched::parse("000003e8 00000040 000f4240 3b9aca00\n").unwrap();
        assert_eq!(p, Psched::MODERN);
        assert_eq!(p.ticks_per_usec(), 15.625);
        assert_eq!(p.hz(), 1_000_000_000);
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(Psched::parse(""), None);
        assert_eq!(Psched::parse("3e8 40 f4240"), None);
        assert_eq!(Psched::parse("zz 40 f4240 3b9aca00"), None);
        assert_eq!(Psched::parse("3e8 0 f4240 3b9aca00"), None);
    }

    #[test]
    fn unreadable_file_falls_back() {
        let err = Psched::read_from(Path::new("/nonexistent/psched")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/psched"), "{err}");
        let dir = std::env::temp_dir().join(format!("linkem-psched-{}", std::process::id()));
        std::fs::write(&dir, "garbage").unwrap();
        let err = Psched::read_from(&dir).unwrap_err();
        std::fs::remove_file(&dir).unwrap();
        assert!(err.to_string().contains("four hexadecimal words"), "{err}");
        // On Linux the real file parses; elsewhere the fallback is used.
        let p = Psched::read();
        assert!(p.ticks_per_usec() > 0.0);
    }

    #[test]
    fn nanosecond_clock_hack_and_hz_fallback() {
        // clock_res 10^9: tick multiplier 1, i.e. us2t / us2t * 1000 ticks per usec.
        let p = Psched {
            t2us: 1000,
            us2t: 1000,
            clock_res: 1_000_000_000,
            hz_word: 250,
        };
        assert_eq!(p.ticks_per_usec(), 1000.0);
        assert_eq!(p.hz(), FALLBACK_HZ);
    }

    #[test]
    fn xmittime_matches_tc() {
        let p = Psched::MODERN;
        // 1600 bytes at 10 Mbit/s = 1280 us = 20000 ticks (htb_class_10mbit fixture).
        assert_eq!(p.xmittime(1_250_000, 1600), 20000);
        // Rounded up.
        assert_eq!(p.xmittime(1_250_000, 1), 13);
        assert_eq!(p.xmittime(0, 1), u32::MAX);
        assert_eq!(p.xmitsize(1_250_000, 20000), 1600);
    }

    #[test]
    fn rate_table_cell_log() {
        let p = Psched::MODERN;
        let (t, log) = p.rate_table(1_250_000, 0, 1600);
        assert_eq!(log, 3);
        assert_eq!(&t[..4], &[100, 200, 300, 400]);
        let (_, log) = p.rate_table(1_250_000, 0, 0);
        assert_eq!(log, 3, "mtu 0 means 2047");
        let (t, _) = p.rate_table(1_250_000, 64, 1600);
        assert_eq!(t[0], t[7], "mpu raises small sizes");
    }

    #[test]
    fn ratespec_layout() {
        let (spec, _) = RateSpec::with_table(&Psched::MODERN, 5_000_000_000, 1600);
        assert_eq!(spec.rate, u32::MAX);
        let mut out = vec![];
        spec.write(&mut out);
        assert_eq!(out.len(), RateSpec::LEN);
        assert_eq!(out, [3, 1, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(needs_rate64(1 << 32));
        assert!(!needs_rate64(u64::from(u32::MAX)));
    }
}
