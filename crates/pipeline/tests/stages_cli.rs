//! `stagewise stages`: the catalogue of every box's implementations, as text and as JSON.

use crate::util::{TempDir, stagewise, texts};

#[test]
fn the_catalogue_lists_each_box_s_kinds_as_text_and_json() {
    let dir = TempDir::new("stages");
    let out = stagewise(dir.path(), &["stages"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for line in ["[forward]", "[optimizer]", "kind = \"sgd\"", "kind = \"numeric\"", "kind = \"plateau\""] {
        assert!(stdout.contains(line), "`{line}` missing:\n{stdout}");
    }

    let out = stagewise(dir.path(), &["stages", "--json"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stages --json prints JSON");
    let sections = json.as_array().expect("an array of sections");
    let optimizer = sections.iter().find(|s| s["name"] == "optimizer").expect("[optimizer]");
    assert_eq!(optimizer["default_kind"], "adam");
    let sgd = optimizer["kinds"].as_array().unwrap().iter().find(|k| k["name"] == "sgd").expect("sgd");
    let momentum =
        sgd["keys"].as_array().unwrap().iter().find(|k| k["name"] == "momentum").expect("momentum");
    assert_eq!((momentum["type"].as_str(), momentum["default"].as_f64()), (Some("number"), Some(0.0)));
}
