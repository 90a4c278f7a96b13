//! `cargo xtask bench-tokenizers`: Stagewise's byte-level BPE trainer and encoder beside HF
//! `tokenizers`, SentencePiece and tokie, on the same corpus and settings.
//!
//! One invocation builds the release `stagewise` binary, then, best of `--repeats` each:
//! - times `stagewise train-tokenizer --kind bpe` (the whole process) on `--data`;
//! - times `stagewise encode` of every line of `--data` with that tokenizer (the whole process:
//!   loading the file, encoding, writing the ids to a file);
//! - with `--python PYTHON`, runs `benches/reference/bench_tokenizers.py`, which times HF's
//!   BpeTrainer and SentencePiece's BPE trainer in process, tokie loading the same tokenizer.json
//!   and encoding every line in a fresh process (cold), and HF's `encode_batch`; it checks that
//!   tokie wrote as many ids as `stagewise encode`.
//!
//! It prints a table and rewrites the `<!-- bench-tokenizers:start -->` ...
//! `<!-- bench-tokenizers:end -->` section of `docs/results.md` (appended when missing).

use serde_json::Value;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Options of `cargo xtask bench-tokenizers`.
#[derive(Debug, clap::Args)]
pub struct BenchTokenizersArgs {
    /// A Python with tokenizers, sentencepiece and tokie: also time them.
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<OsString>,
    /// The corpus.
    #[arg(long, value_name = "PATH", default_value = "data/shakespeare.txt")]
    pub data: PathBuf,
    /// BPE vocabulary size.
    #[arg(long, default_value_t = 8192)]
    pub vocab_size: usize,
    /// Least count of a merged pair.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Worker threads, for every library.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Runs of each measurement; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Leave docs/results.md alone.
    #[arg(long)]
    pub no_docs: bool,
}

const START: &str = "<!-- bench-tokenizers:start -->";
const END: &str = "<!-- bench-tokenizers:end -->";

/// Runs the benchmark; returns the exit code.
pub fn run(root: &Path, args: &BenchTokenizersArgs) -> Result<i32, String> {
    if args.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    let cargo = crate::cargo();
    eprintln!("xtask bench-tokenizers: building the release binary");
    let status = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet", "-p", "stagewise-pipeline", "--bin", "stagewise"])
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", cargo.to_string_lossy()))?;
    if !status.success() {
        return Err(format!("the release build failed ({status})"));
    }
    let target = crate::bench::target_dir(root);
    let bin = target.join("release").join(format!("stagewise{}", std::env::consts::EXE_SUFFIX));
    let work = target.join("bench-tokenizers");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let tokenizer = work.join("stagewise-bpe.json");
    let ids_path = work.join("ids.txt");
    let data = root.join(&args.data);
    let (threads, vocab, min_freq) =
        (args.threads.to_string(), args.vocab_size.to_string(), args.min_frequency.to_string());
    let load_before = crate::bench::load_average();

    let mut train = f64::INFINITY;
    for _ in 0..args.repeats {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(root).arg("train-tokenizer").args(["--kind", "bpe", "--data"]).arg(&data);
        cmd.args(["--vocab-size", &vocab, "--min-frequency", &min_freq, "--threads", &threads, "--out"]);
        cmd.arg(&tokenizer);
        let start = Instant::now();
        crate::bench::run_child(&mut cmd, "stagewise train-tokenizer")?;
        train = train.min(start.elapsed().as_secs_f64());
    }
    let mut encode = f64::INFINITY;
    for _ in 0..args.repeats {
        let out = std::fs::File::create(&ids_path).map_err(|e| format!("{}: {e}", ids_path.display()))?;
        let start = Instant::now();
        let status = Command::new(&bin)
            .current_dir(root)
            .arg("encode")
            .arg("--tokenizer")
            .arg(&tokenizer)
            .arg("--input")
            .arg(&data)
            .args(["--threads", &threads])
            .stdout(Stdio::from(out))
            .status()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        encode = encode.min(start.elapsed().as_secs_f64());
        if !status.success() {
            return Err(format!("stagewise encode failed ({status})"));
        }
    }
    let ids_text = std::fs::read_to_string(&ids_path).map_err(|e| format!("{}: {e}", ids_path.display()))?;
    let our_ids = ids_text.split_ascii_whitespace().count();
    eprintln!("xtask bench-tokenizers: stagewise train {train:.3} s, encode {encode:.3} s ({our_ids} ids)");

    let python = match &args.python {
        Some(py) => {
            let mut cmd = Command::new(py);
            cmd.current_dir(root)
                .arg(root.join("benches/reference/bench_tokenizers.py"))
                .arg("--data")
                .arg(&data);
            cmd.arg("--tokenizer").arg(&tokenizer);
            cmd.args(["--vocab-size", &vocab, "--min-frequency", &min_freq, "--threads", &threads]);
            cmd.args(["--repeats", &args.repeats.to_string()]);
            let out = crate::bench::run_child(&mut cmd, "bench_tokenizers.py")?;
            let line = out
                .lines()
                .rev()
                .find(|l| l.starts_with('{'))
                .ok_or("bench_tokenizers.py printed no JSON")?;
            let v: Value = serde_json::from_str(line).map_err(|e| format!("bench_tokenizers.py: {e}"))?;
            if v["tokie_ids"].as_u64() != Some(our_ids as u64) {
                return Err(format!("tokie wrote {} ids, stagewise encode {our_ids}", v["tokie_ids"]));
            }
            Some(v)
        }
        None => None,
    };
    let section = render(args, train, encode, our_ids, python.as_ref(), &load_before);
    println!("{section}");
    if !args.no_docs {
        let docs = root.join("docs/results.md");
        let text = std::fs::read_to_string(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
        let updated = replace_section(&text, &section);
        std::fs::write(&docs, updated).map_err(|e| format!("{}: {e}", docs.display()))?;
        eprintln!("xtask bench-tokenizers: updated {}", docs.display());
    }
    Ok(0)
}

/// The markdown section: settings, the table, the ratio to tokie and the command.
fn render(
    args: &BenchTokenizersArgs,
    train: f64,
    encode: f64,
    ids: usize,
    python: Option<&Value>,
    load: &str,
) -> String {
    let secs = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |s| format!("{s:.3} s"));
    let get = |key: &str| python.and_then(|p| p[key].as_f64());
    let mut s = String::new();
    s.push_str(&format!(
        "## Tokenizers: `cargo xtask bench-tokenizers`\n\nByte-level BPE on `{}`: vocabulary {}, \
         `min_frequency` {}, {} threads for every library; best of {} runs; {} ids; CPU: {}; load \
         before: {load}.\n\n",
        args.data.display(),
        args.vocab_size,
        args.min_frequency,
        args.threads,
        args.repeats,
        ids,
        crate::bench::cpu_model(),
    ));
    s.push_str("| | Stagewise | HF `tokenizers` | SentencePiece | tokie |\n|---|---:|---:|---:|---:|\n");
    s.push_str(&format!(
        "| train (Stagewise: whole process; Python: in process) | **{}** | {} | {} | – |\n",
        secs(Some(train)),
        secs(get("hf_train")),
        secs(get("spm_train"))
    ));
    s.push_str(&format!(
        "| encode every line (Stagewise: whole process, ids written; tokie: load + `encode_batch_flat`, \
         fresh process; HF: `encode_batch`) | **{}** | {} | – | {} |\n",
        secs(Some(encode)),
        secs(get("hf_encode")),
        secs(get("tokie_encode"))
    ));
    if let Some(p) = python {
        let v = &p["versions"];
        s.push_str(&format!(
            "\nStagewise encode / tokie = **{:.2}×**; train: {:.2}× HF's time, {:.2}× SentencePiece's. \
             Versions: tokenizers {}, sentencepiece {}, tokie {}.\n",
            encode / get("tokie_encode").unwrap_or(f64::NAN),
            train / get("hf_train").unwrap_or(f64::NAN),
            train / get("spm_train").unwrap_or(f64::NAN),
            v["tokenizers"].as_str().unwrap_or("?"),
            v["sentencepiece"].as_str().unwrap_or("?"),
            v["tokie"].as_str().unwrap_or("?"),
        ));
    }
    let python_flag = if python.is_some() { " --python python" } else { "" };
    s.push_str(&format!("\n```sh\ncargo xtask bench-tokenizers{python_flag}\n```\n"));
    s
}

/// `text` with the marked section replaced by `section` (appended when the markers are missing).
fn replace_section(text: &str, section: &str) -> String {
    let block = format!("{START}\n{section}{END}\n");
    match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &text[..a], text[b + END.len()..].trim_start_matches('\n'))
        }
        _ => format!("{}\n{block}", text.trim_end_matches('\n').to_owned() + "\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place_or_appended() {
        let appended = replace_section("# Results\n", "new\n");
        assert_eq!(appended, format!("# Results\n\n{START}\nnew\n{END}\n"));
        let again = replace_section(&format!("{appended}\n## After\n"), "newer\n");
        assert_eq!(again, format!("# Results\n\n{START}\nnewer\n{END}\n## After\n"));
    }
}
