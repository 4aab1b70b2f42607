//! How a host's GPUs are connected to each other, read once at start from
//! `nvidia-smi topo -m` ([`parse`]), so that a booking of any N GPUs takes
//! well-connected ones ([`score`]): NVLink first, then one PCIe switch, several
//! switches, the host bridge, one NUMA node, and across NUMA nodes last.
//!
//! The matrix is tab-separated with a header row of column names (wrapped in
//! an underline escape sequence, even when piped), one row per GPU and NIC,
//! then a legend. Only GPU-to-GPU cells are kept.

use serde::{Deserialize, Serialize};

/// How two GPUs (by index) are connected: `nvidia-smi`'s code for it
/// (`NV12`, `PIX`, `PXB`, `PHB`, `NODE`, `SYS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuLink {
    pub a: u32,
    pub b: u32,
    pub link: String,
}

/// How good a link is: higher is better; NVLink by its number of links.
/// Unknown codes score 0, like no link at all.
pub fn score(link: &str) -> u32 {
    match link {
        "PIX" => 50,
        "PXB" => 40,
        "PHB" => 30,
        "NODE" => 20,
        "SYS" => 10,
        nv => nv
            .strip_prefix("NV")
            .and_then(|n| n.parse::<u32>().ok())
            .map_or(0, |n| 100 + n.min(100)),
    }
}

/// The link in words, for why GPUs were chosen.
pub fn describe(link: &str) -> String {
    match link {
        "PIX" => "behind one PCIe switch".into(),
        "PXB" => "across PCIe switches, without the host bridge".into(),
        "PHB" => "through the PCIe host bridge".into(),
        "NODE" => "on one NUMA node".into(),
        "SYS" => "across NUMA nodes".into(),
        nv if score(nv) > 100 => format!("connected by NVLink ({nv})"),
        other => format!("linked as {other}"),
    }
}

/// Removes `ESC [ … letter` sequences.
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `GPU12` → 12.
fn gpu_number(name: &str) -> Option<u32> {
    name.trim().strip_prefix("GPU")?.parse().ok()
}

/// The GPU-to-GPU links of a `nvidia-smi topo -m` matrix, each pair once
/// (`a < b`). A host with one GPU, or output that is not a matrix, has none.
pub fn parse(text: &str) -> Vec<GpuLink> {
    let mut lines = text.lines().map(strip_escapes);
    let Some(header) = lines.find(|l| l.split('\t').any(|c| gpu_number(c).is_some())) else {
        return Vec::new();
    };
    let columns: Vec<Option<u32>> = header.split('\t').map(gpu_number).collect();
    let mut links = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        let mut cells = line.split('\t');
        let Some(a) = cells.next().and_then(gpu_number) else {
            continue;
        };
        for (column, cell) in columns.iter().skip(1).zip(cells) {
            let cell = cell.trim();
            if let Some(b) = column
                && a < *b
                && !cell.is_empty()
                && cell != "X"
            {
                links.push(GpuLink {
                    a,
                    b: *b,
                    link: cell.to_owned(),
                });
            }
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../gpures-testkit/data/nvidia-smi/"
        );
        std::fs::read_to_string(format!("{dir}{name}")).expect("fixture")
    }

    #[test]
    fn one_real_gpu_has_no_links() {
        // Captured on an H200 (driver 580): the header is underlined even
        // when piped.
        let text = fixture("h200-driver580/topo-m.txt");
        assert!(text.contains('\u{1b}'));
        assert_eq!(parse(&text), vec![]);
    }

    #[test]
    fn four_gpus_and_a_nic_give_each_gpu_pair_once() {
        let links = parse(&fixture("topo-m-4gpu-example.txt"));
        let got: Vec<(u32, u32, &str)> =
            links.iter().map(|l| (l.a, l.b, l.link.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, 1, "SYS"),
                (0, 2, "NODE"),
                (0, 3, "NV4"),
                (1, 2, "NV4"),
                (1, 3, "SYS"),
                (2, 3, "PXB"),
            ]
        );
    }

    #[test]
    fn links_rank_nvlink_first_and_numa_crossings_last() {
        let ranked = ["NV18", "NV4", "PIX", "PXB", "PHB", "NODE", "SYS", "???"];
        for pair in ranked.windows(2) {
            assert!(score(pair[0]) > score(pair[1]), "{pair:?}");
        }
        assert_eq!(describe("NV4"), "connected by NVLink (NV4)");
    }

    #[test]
    fn garbage_is_no_topology() {
        assert_eq!(
            parse("Failed to initialize NVML: Driver/library version mismatch\n"),
            vec![]
        );
        assert_eq!(parse(""), vec![]);
    }
}
