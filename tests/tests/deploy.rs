//! The deployment files agree with the examples they copy.

use closeloop_tests::example;

#[test]
fn k8s_programs_config_map_is_the_example_programs_file() {
    let k8s = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/programs.yaml");
    assert_eq!(
        std::fs::read_to_string(k8s).unwrap(),
        std::fs::read_to_string(example("programs.yaml")).unwrap(),
        "k8s/base/programs.yaml must be a copy of deploy/examples/programs.yaml \
         (kustomize cannot read files outside k8s/): cp deploy/examples/programs.yaml k8s/base/"
    );
}
