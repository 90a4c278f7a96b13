//! The memory a run will need, estimated from its config before anything is read or allocated,
//! so that a configuration that cannot fit is refused with an error naming the config field that
//! drives it, instead of being killed by the system halfway (or aborting on a failed allocation).
//!
//! The estimate covers the built-in boxes the run uses (a box replaced by your own type is not
//! counted: its sizes are its own) and the corpus; every tensor and buffer is also checked when it
//! is declared (`stagewise_core::checked_size`, fallible allocation), so a box of your own that
//! asks for too much fails cleanly too, naming its tensor.

use crate::config::Config;
use stagewise_core::{Error, Result, human_bytes};

/// One item of the estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct Need {
    /// The tensors or buffers (`lstm.weight_hh_l0 and the other LSTM weights`, `fc.out (the logits)`).
    pub what: String,
    /// The config key whose value drives its size most (`forward.hidden`), or keys
    /// (`train.batch × train.bptt`).
    pub field: &'static str,
    /// That key's value, as written in the config.
    pub value: String,
    /// Bytes (an `f64`: products of user-given sizes may exceed any integer type).
    pub bytes: f64,
}

/// Which of the model's five boxes are the config's built-ins (and so described by the config):
/// embed, forward, loss, backward, update.
pub type ConfigBoxes = [bool; 5];

/// The estimate for `config` with a vocabulary of at most `vocab` ids (its `max_size`: the
/// vocabulary is fitted later) and the corpus file of `corpus_bytes`.
pub fn estimate(config: &Config, vocab: usize, corpus_bytes: u64, boxes: ConfigBoxes) -> Vec<Need> {
    let f = |x: usize| x as f64;
    let (v, e, h) = (f(vocab), f(config.embedding.dim()), f(config.forward.hidden()));
    let rows = f(config.train.batch) * f(config.train.bptt);
    let scalar = 4.0; // f32
    // Parameters are held with their gradients and the optimizer's state buffers, and with
    // `train.patience` a copy of the best epoch's.
    let copies = 2.0
        + if boxes[4] { config.optimizer.state_buffers() as f64 } else { 0.0 }
        + if config.train.patience > 0 { 1.0 } else { 0.0 };
    let mut needs = Vec::new();
    let mut need = |what: &str, field: &'static str, value: String, scalars: f64| {
        needs.push(Need { what: what.to_owned(), field, value, bytes: scalars * scalar });
    };
    let (dim, hidden) = (config.embedding.dim().to_string(), config.forward.hidden().to_string());
    if boxes[0] {
        need("embedding.weight", "embedding.dim", dim.clone(), v * e * copies);
        need("embedding.out", "embedding.dim", dim, rows * e * 2.0);
    }
    if boxes[1] {
        use stagewise_forward::RecurrentKind;
        let kind = config.forward.kind();
        let (cell, g) = match kind {
            RecurrentKind::Lstm => ("LSTM", 4.0),
            RecurrentKind::Gru => ("GRU", 3.0),
            RecurrentKind::RnnTanh => ("RNN", 1.0),
        };
        // Layers after the first read the layer below (H wide) instead of the embedding.
        let more = f(config.forward.layers()) - 1.0;
        let weights = g * h * (e + h + 2.0) + more * g * h * (2.0 * h + 2.0);
        // With several layers both keys drive the size, and both are named.
        let (field, value) = match config.forward.layers() {
            1 => ("forward.hidden", hidden.clone()),
            layers => ("forward.hidden × forward.layers", format!("{hidden} × {layers}")),
        };
        need(&format!("the {cell} weights"), field, value.clone(), weights * copies);
        // Per layer, in units of [rows, H]: LSTM gates and their gradients, c, tanh(c), h and its
        // gradient, h transposed (13; the GRU's gates, hn, h, both gate gradients and h
        // transposed too; the RNN's 5); with dropout a mask and the dropped output with its
        // gradient (3, and 3·E for the input); and W_hh transposed.
        let per_layer = if kind == RecurrentKind::RnnTanh { 5.0 } else { 13.0 };
        let dropout = if config.forward.dropout() > 0.0 { 3.0 } else { 0.0 };
        let layer = rows * h * (per_layer + dropout) + g * h * h;
        let activations = (more + 1.0) * layer + rows * e * dropout;
        need(&format!("the {cell} activations"), field, value, activations);
        need("fc.weight", "forward.hidden", hidden.clone(), (h + 1.0) * v * copies);
        // [x | 1] and its transpose, the head's transposed weight copies.
        need("the head's operands", "forward.hidden", hidden, (h + 1.0) * (2.0 * rows + 2.0 * v));
        let logits = "fc.out (the logits and their gradient)";
        let window = format!("{} × {}", config.train.batch, config.train.bptt);
        need(logits, "train.batch × train.bptt", window, rows * v * 2.0);
    }
    if boxes[2] {
        needs.push(Need {
            what: "the loss's per-row results".into(),
            field: "train.bptt",
            value: config.train.bptt.to_string(),
            bytes: rows * 9.0,
        });
    }
    // The text, its tokens and their ids, while the corpus is prepared.
    needs.push(Need {
        what: format!("the corpus ({})", config.data.path.display()),
        field: "data.path",
        value: config.data.path.display().to_string(),
        bytes: corpus_bytes as f64 * 4.0,
    });
    needs
}

/// Refuses `needs` if their sum exceeds `limit` bytes, naming the biggest item and its field.
pub fn check(needs: &[Need], limit: f64, limit_source: &str) -> Result<()> {
    let total: f64 = needs.iter().map(|n| n.bytes).sum();
    if total <= limit {
        return Ok(());
    }
    let Some(big) = needs.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes)) else {
        return Ok(());
    };
    let (what, field, value) = (&big.what, big.field, &big.value);
    let message = if big.bytes > limit {
        format!(
            "needs {} for {what} alone ({} for the whole run); {} {limit_source}",
            human_bytes(big.bytes),
            human_bytes(total),
            human_bytes(limit)
        )
    } else {
        format!(
            "the run needs {}, most of it {} for {what}; {} {limit_source}",
            human_bytes(total),
            human_bytes(big.bytes),
            human_bytes(limit)
        )
    };
    Err(Error::config(format!("{field} = {value}"), message))
}

/// The memory the system can give a new process now: `MemAvailable` of `/proc/meminfo`, in bytes
/// (`None` where that file does not exist).
pub fn available_bytes() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line["MemAvailable:".len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Parses a size like `8G`, `1.5GiB`, `512M`, `4096` (bytes; K, M, G, T are powers of 1024, with
/// an optional `B` or `iB`). `field` names the setting in errors.
pub fn parse_bytes(text: &str, field: &str) -> Result<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(Error::config(
                field,
                format!("`{text}` is not a size (expected e.g. 8G, 512M or a number of bytes)"),
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        Error::config(field, format!("`{text}` is not a size (expected e.g. 8G, 512M or a number of bytes)"))
    })?;
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(Error::config(field, format!("`{text}` is out of range (at least one byte)")));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("4096", "f").unwrap(), 4096);
        assert_eq!(parse_bytes("8G", "f").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("1.5GiB", "f").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("512 mb", "f").unwrap(), 512 << 20);
        for bad in ["", "G", "8X", "-1G", "0", "1e400"] {
            let err = parse_bytes(bad, "train.max_memory").unwrap_err().to_string();
            assert!(err.contains("train.max_memory"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_seed_configuration_needs_a_few_hundred_megabytes() {
        let needs = estimate(&Config::default(), 10_000, 5_000_000, [true; 5]);
        let total: f64 = needs.iter().map(|n| n.bytes).sum();
        assert!((100e6..400e6).contains(&total), "{total}");
        assert!(check(&needs, 1e9, "available").is_ok());
    }

    #[test]
    fn the_biggest_item_and_its_field_are_named() {
        let config =
            Config { forward: stagewise_forward::ForwardConfig::lstm(1_000_000_000), ..Config::default() };
        let needs = estimate(&config, 10_000, 0, [true; 5]);
        let err = check(&needs, 22.9e9, "available").unwrap_err().to_string();
        assert!(err.starts_with("config: forward.hidden = 1000000000: needs"), "{err}");
        assert!(err.contains("the LSTM weights alone") && err.contains("22.9 GB available"), "{err}");
        // A sum over the limit with no single item over it names the biggest one.
        let needs = estimate(&Config::default(), 10_000, 0, [true; 5]);
        let err = check(&needs, 200e6, "allowed by --max-memory").unwrap_err().to_string();
        assert!(err.contains("the run needs") && err.contains("most of it"), "{err}");
        // A box of your own is not counted.
        let needs = estimate(&config, 10_000, 0, [true, false, true, true, true]);
        assert!(check(&needs, 22.9e9, "available").is_ok());
    }
}
