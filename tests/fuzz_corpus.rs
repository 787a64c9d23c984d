//! Replays every committed fuzz input (`fuzz/corpus/<target>/` seeds and
//! finds, `fuzz/regressions/<target>/` crashes once fixed) through the same
//! target functions cargo-fuzz runs, so the properties are checked on stable
//! in every test run, with or without a nightly toolchain.

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

#[test]
fn every_committed_fuzz_input_still_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in lopache::fuzzing::TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(!corpus.is_empty(), "no seed corpus for fuzz target {name}");
        for path in corpus
            .iter()
            .chain(&inputs(&root.join("regressions").join(name)))
        {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
        }
    }
}
