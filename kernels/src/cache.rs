//! What decides how a direction's steps are cut (see `forward::batch_split`), read once at
//! start-up: a thread's share of L2, since a recurrent weight that stays resident in each
//! thread's L2 from step to step lets the threads take rows of the batch each (Zen 4 and Zen 5
//! have 1 MiB a core, recent Intel Xeons 2 MiB; an L2 that several logical CPUs share, SMT
//! siblings or a cluster of small cores, is divided among them); and, past L2, how many rows
//! a thread needs for rows to pay all the same, which differs from one core to the next.

use std::path::Path;
use std::sync::OnceLock;

/// What is assumed where the size cannot be read (no sysfs, not Linux): 1 MiB, the smallest L2
/// of the x86 cores this crate is tuned on, so a weight judged resident is resident there.
const FALLBACK_L2_BYTES: usize = 1 << 20;

/// Bytes of L2 per logical CPU (cpu0's L2, as Linux's sysfs reports it, over the CPUs that
/// share it), or 1 MiB if unknown.
pub(crate) fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| {
        l2_from_sysfs(Path::new("/sys/devices/system/cpu/cpu0/cache")).unwrap_or(FALLBACK_L2_BYTES)
    })
}

/// Rows of the batch a thread needs for a step cut by rows to beat one cut by units when the
/// recurrent weight is past L2 (each thread then streams all of it from L3 each step, not its
/// part), in training (its forward and backward) as in inference, or `None` where the unit cut
/// is kept. On Zen 4 (likely because its 512-bit FMAs take two 256-bit halves, so that a step's
/// GEMM takes twice the time per byte of W_hh that it takes on Zen 5 or the Intel Xeon, which
/// hides the longer stream; not measured apart), 4 (`ab.sh`, 2 threads, 4-8 pairs each,
/// 2026-12-04). With 8 rows or more the rows cut took 0.90-0.93x the training time of LSTM
/// 100, 16 to 64, 512 and GRU 100, 64, 512 and 0.92-0.99x their inference time. With 4 to 7:
/// training 0.94-0.99x on every case measured (H = 512 to 1024); inference 0.90-0.98x with
/// W_hh at 3-6 MiB (LSTM 100, 8 to 11, 512 and 100, 8, 640; GRU 100, 9 and 10, 512; RNN 100,
/// 8, 1024), 0.99-1.01x at 9-16 MiB (LSTM 100, 8, 768 and 100, 8, 256, 1024; an earlier 1.28x
/// on the latter did not come back in 8 pairs). 3 rows a thread: 0.91-0.97x on an even split
/// with H = 512, but 1.05x at H = 1024 and 1.04-1.06x split 4:3 (B = 7); 2 rows, 1.07-1.13x.
/// `None` elsewhere: on Zen 5, B = 64's steps by rows took 1.009x the training time (21
/// pairs, 2026-12-01); not measured on Intel.
pub(crate) fn rows_past_l2() -> Option<usize> {
    static ZEN4: OnceLock<bool> = OnceLock::new();
    ZEN4.get_or_init(is_zen4).then_some(4)
}

/// AMD family 19h (Zen 3 and Zen 4) with AVX-512, which Zen 3 lacks.
#[cfg(target_arch = "x86_64")]
fn is_zen4() -> bool {
    use std::arch::x86_64::__cpuid;
    let vendor = __cpuid(0);
    // "AuthenticAMD", as cpuid leaf 0 spells it in ebx, edx, ecx.
    let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
    let eax = __cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    let family = base + if base == 0xf { (eax >> 20) & 0xff } else { 0 };
    amd && family == 0x19 && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn is_zen4() -> bool {
    false
}

/// The size of the level-2 data or unified cache among `dir`'s `index*` entries.
fn l2_from_sysfs(dir: &Path) -> Option<usize> {
    let read = |entry: &Path, name: &str| std::fs::read_to_string(entry.join(name)).ok();
    std::fs::read_dir(dir).ok()?.find_map(|entry| {
        let entry = entry.ok()?.path();
        let is_index = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("index"));
        let level = read(&entry, "level")?;
        let kind = read(&entry, "type")?;
        match is_index && level.trim() == "2" && kind.trim() != "Instruction" {
            true => {
                let sharing = read(&entry, "shared_cpu_list").map_or(Some(1), |l| cpu_count(&l));
                Some(parse_size(&read(&entry, "size")?)? / sharing?)
            }
            false => None,
        }
    })
}

/// How many CPUs a sysfs CPU list names (`0`, `0-1`, `0,2`, `0-3,8-11`); `None` if it is not
/// one or names none.
fn cpu_count(list: &str) -> Option<usize> {
    let count = list.trim().split(',').try_fold(0usize, |n, part| {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi) = (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?);
        (lo <= hi).then(|| n + (hi - lo + 1))
    })?;
    (count > 0).then_some(count)
}

/// A sysfs cache size: `2048K`, `1M`, or plain bytes; `None` when it is not one (or is 0).
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()?
        .checked_mul(unit)
        .filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUID reading agrees with the kernel's: Zen 4 where /proc/cpuinfo names an AMD CPU
    /// of family 25 with AVX-512 F (the only CPU given a number of rows past L2).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn zen4_as_the_kernel_sees_it() {
        let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
            return;
        };
        let field = |name: &str| {
            info.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let zen4 = field("vendor_id").as_deref() == Some("AuthenticAMD")
            && field("cpu family").as_deref() == Some("25")
            && field("flags").is_some_and(|f| f.split(' ').any(|x| x == "avx512f"));
        assert_eq!(is_zen4(), zen4, "{:?}", field("model name"));
        assert_eq!(rows_past_l2(), zen4.then_some(4));
    }

    #[test]
    fn cpu_lists_count_as_sysfs_writes_them() {
        assert_eq!(cpu_count("0\n"), Some(1));
        assert_eq!(cpu_count("0-1"), Some(2));
        assert_eq!(cpu_count("0,2"), Some(2));
        assert_eq!(cpu_count("0-3,8-11"), Some(8));
        for bad in ["", "x", "3-1", "0-", "1,,2"] {
            assert_eq!(cpu_count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("2048K\n"), Some(2 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("65536"), Some(65536));
        for bad in ["", "K", "0K", "-1K", "12Q", "1.5M", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    /// A cache directory laid out as sysfs lays it out: the L2 is found whatever its index,
    /// and an instruction cache or an L1 / L3 of any size is not taken for it.
    #[test]
    fn l2_found_among_the_indices() {
        let dir = std::env::temp_dir().join(format!("recur-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (i, level, kind, size) in [
            (0, "1", "Data", "48K"),
            (1, "1", "Instruction", "64K"),
            (2, "3", "Unified", "491520K"),
            (3, "2", "Unified", "2048K"),
        ] {
            let e = dir.join(format!("index{i}"));
            std::fs::create_dir_all(&e).unwrap();
            for (name, v) in [("level", level), ("type", kind), ("size", size)] {
                std::fs::write(e.join(name), format!("{v}\n")).unwrap();
            }
        }
        assert_eq!(l2_from_sysfs(&dir), Some(2 << 20));
        // Shared by two SMT siblings: half each.
        std::fs::write(dir.join("index3/shared_cpu_list"), "0,64\n").unwrap();
        assert_eq!(l2_from_sysfs(&dir), Some(1 << 20));
        std::fs::remove_dir_all(dir.join("index3")).unwrap();
        assert_eq!(l2_from_sysfs(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(l2_from_sysfs(&dir), None);
        assert!(l2_bytes() >= 1 << 16, "an L2 of {} bytes", l2_bytes());
    }
}
