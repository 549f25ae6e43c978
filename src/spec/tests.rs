use super::*;

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text, &Overrides::default()).unwrap_err()
}

fn paths(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.path).collect()
}

const MIN: &str = "[cluster]\nname = \"c\"\nregion = \"eu-west-1\"\n";

#[test]
fn seed_plan_is_the_reference_scenario() {
    let spec = parse(&repo_file("plans/seed-ap-northeast-2.toml"), &Overrides::default()).unwrap();
    assert_eq!(spec.cluster, "podnet-demo");
    assert_eq!(spec.region, "ap-northeast-2");
    assert_eq!(spec.secondary_cidr.to_string(), "100.64.0.0/16");
    let PodSubnetPlan::Explicit { subnets } = &spec.pod_subnets else {
        panic!("explicit expected")
    };
    let got: Vec<(String, String)> = subnets
        .iter()
        .map(|s| (s.availability_zone.clone(), s.cidr.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ap-northeast-2a".to_string(), "100.64.1.0/24".to_string()),
            ("ap-northeast-2c".to_string(), "100.64.2.0/24".to_string())
        ]
    );
    assert_eq!(spec.security_group_patches.len(), 2);
    assert_eq!(
        spec.security_group_patches[0].target,
        SecurityGroupRef::Name("podnet-demo-rds".into())
    );
    assert_eq!(spec.security_group_patches[0].ports, Some((3306, 3306)));
    assert_eq!(
        spec.security_group_patches[1].target,
        SecurityGroupRef::Name("podnet-demo-vpce".into())
    );
    assert_eq!(spec.security_group_patches[1].ports, Some((443, 443)));
    assert!(spec.eni_security_groups.is_empty());
    assert_eq!(spec.karpenter.reserved_enis, 1);
    assert_eq!(spec.replacement.pdb_bypass, model::PdbBypass::Never);
}

#[test]
fn example_plan_is_valid_and_auto() {
    let spec = parse(&repo_file("plans/example.toml"), &Overrides::default()).unwrap();
    assert_eq!(spec.pod_subnets, PodSubnetPlan::Auto);
    assert_eq!(spec.replacement.drain_timeout, std::time::Duration::from_secs(600));
    // Its [waits] section writes out the defaults.
    assert_eq!(spec.waits, crate::spec::Waits::default());
}

#[test]
fn defaults_fill_a_minimal_plan() {
    let spec = parse(MIN, &Overrides::default()).unwrap();
    assert_eq!(spec.secondary_cidr.to_string(), "100.64.0.0/16");
    assert_eq!(spec.vpc_cidr_quota, 5);
    assert_eq!(spec.pod_subnets, PodSubnetPlan::Auto);
    assert_eq!(spec.vpc_cni.eni_config_label, "topology.kubernetes.io/zone");
    assert_eq!(spec.vpc_cni.resolve_conflicts, model::ResolveConflicts::Preserve);
    assert_eq!(spec.replacement.batch_size, 1);
    assert!(spec.replacement.node_groups.selects("anything"));
}

#[test]
fn overrides_win() {
    let o = Overrides {
        cluster: Some("other".into()),
        region: Some("us-east-1".into()),
    };
    let spec = parse(MIN, &o).unwrap();
    assert_eq!((spec.cluster.as_str(), spec.region.as_str()), ("other", "us-east-1"));
    // The region may come from the command line alone.
    let spec = parse(
        "[cluster]\nname = \"c\"\n",
        &Overrides {
            region: Some("us-east-1".into()),
            ..Default::default()
        },
    );
    assert!(spec.is_ok());
    assert_eq!(paths("[cluster]\nname = \"c\"\n"), vec!["cluster.region"]);
}

#[test]
fn empty_and_non_toml() {
    let p = problems("");
    assert!(p[0].message.contains("empty"), "{p:?}");
    let p = problems("   \n\n");
    assert!(p[0].message.contains("empty"));
    let p = problems("this is not toml at all [[[");
    assert!(p[0].message.contains("not valid TOML"), "{p:?}");
    assert!(p[0].message.contains("line 1"), "{p:?}");
    let p = problems("\u{0}\u{1}binary");
    assert!(p[0].message.contains("not valid TOML"));
}

#[test]
fn every_unknown_key_is_named() {
    let text =
        format!("{MIN}colour = \"red\"\n[network]\nsecondry_cidr = \"100.64.0.0/16\"\n[replacement]\nbatchsize = 2\n");
    let p = problems(&text);
    let keys: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert!(keys.contains(&"cluster.colour"), "{p:?}");
    assert!(keys.contains(&"network.secondry_cidr"), "{p:?}");
    assert!(keys.contains(&"replacement.batchsize"), "{p:?}");
    let net = p.iter().find(|p| p.path == "network.secondry_cidr").unwrap();
    assert!(net.message.contains("unknown key `secondry_cidr`"), "{net:?}");
    assert!(net.fix.contains("secondary_cidr"), "{net:?}");
    assert!(!net.fix.contains('\n'), "{net:?}");
    // Problems in the rest of the file are still reported.
    let p = problems(&format!(
        "{MIN}colour = 1\n[network]\nsecondary_cidr = \"198.19.0.0/33\"\n"
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[1].path, "network.secondary_cidr");
    // A key at the top level is named too.
    let p = problems(&format!("colour = 1\n{MIN}"));
    assert_eq!(p[0].path, "colour", "{p:?}");
}

#[test]
fn missing_cluster_and_wrong_types() {
    let p = problems("[network]\nsecondary_cidr = \"100.64.0.0/16\"\n");
    assert!(p[0].message.contains("cluster"), "{p:?}");
    let p = problems(&format!("{MIN}[replacement]\nbatch_size = \"two\"\n"));
    assert_eq!(p[0].path, "replacement.batch_size", "{p:?}");
    let p = problems(&format!("{MIN}[vpc_cni]\nresolve_conflicts = \"sometimes\"\n"));
    assert_eq!(p[0].path, "vpc_cni.resolve_conflicts", "{p:?}");
    assert!(p[0].fix.contains("preserve"), "{p:?}");
    let p = problems(&format!(
        "{MIN}[[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\n"
    ));
    assert!(p[0].message.contains("pod_subnets.subnet[0].cidr"), "{p:?}");
}

#[test]
fn bad_cidrs_are_named() {
    let text = format!(
        "{MIN}[network]\nsecondary_cidr = \"100.64.0/16\"\n[pod_subnets]\nsizing = \"explicit\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\ncidr = \"100.64.1.5/24\"\n"
    );
    let p = problems(&text);
    assert_eq!(
        paths(&text),
        vec!["network.secondary_cidr", "pod_subnets.subnet[0].cidr"]
    );
    assert!(p[1].message.contains("did you mean 100.64.1.0/24"), "{p:?}");
    let p = problems(&format!("{MIN}[network]\nsecondary_cidr = \"100.0.0.0/8\"\n"));
    assert!(p[0].message.contains("/16 to /28"), "{p:?}");
}

#[test]
fn explicit_subnet_rules() {
    let text = format!(
        "{MIN}[pod_subnets]\nsizing = \"explicit\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\ncidr = \"100.65.1.0/24\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1b\"\ncidr = \"100.64.0.0/20\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1c\"\ncidr = \"100.64.1.0/24\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"eu-west-1c\"\ncidr = \"100.64.32.0/29\"\n\
         [[pod_subnets.subnet]]\navailability_zone = \"euw1-az1\"\ncidr = \"100.64.64.0/24\"\n"
    );
    let p = problems(&text);
    let find = |path: &str, needle: &str| {
        assert!(
            p.iter().any(|x| x.path == path && x.message.contains(needle)),
            "no `{needle}` at {path}: {p:#?}"
        )
    };
    find("pod_subnets.subnet[0].cidr", "outside the secondary CIDR");
    find("pod_subnets.subnet[2].cidr", "overlaps pod_subnets.subnet[1]");
    find("pod_subnets.subnet[3].availability_zone", "already has a pod subnet");
    find("pod_subnets.subnet[3].cidr", "/29");
    find("pod_subnets.subnet[4].availability_zone", "not an availability zone");
    assert!(p.iter().all(|x| !x.fix.is_empty()));
}

#[test]
fn sizing_and_subnets_must_agree() {
    let p = problems(&format!("{MIN}[pod_subnets]\nsizing = \"explicit\"\n"));
    assert_eq!(p[0].path, "pod_subnets.subnet");
    let p = problems(&format!(
        "{MIN}[[pod_subnets.subnet]]\navailability_zone = \"eu-west-1a\"\ncidr = \"100.64.1.0/24\"\n"
    ));
    assert!(p[0].message.contains("sizing = \"auto\""), "{p:?}");
}

#[test]
fn karpenter_discovery_tag_is_refused() {
    let p = problems(&format!(
        "{MIN}[pod_subnets]\ntags = {{ \"karpenter.sh/discovery\" = \"c\", Name = \"x\" }}\n"
    ));
    assert!(
        p.iter()
            .any(|x| x.message.contains("must not carry karpenter.sh/discovery")),
        "{p:?}"
    );
    assert!(p.iter().any(|x| x.message.contains("podnet sets `Name`")), "{p:?}");
}

#[test]
fn security_group_patch_rules() {
    let text = format!(
        "{MIN}[[security_group_patch]]\ngroup_name = \"a\"\ngroup_id = \"sg-12345678\"\nports = 1\n\
         [[security_group_patch]]\ngroup_id = \"nope\"\nports = 70000\n\
         [[security_group_patch]]\ngroup_name = \"b\"\nprotocol = \"all\"\nports = 5\n\
         [[security_group_patch]]\ngroup_name = \"c\"\nprotocol = \"gre\"\n\
         [[security_group_patch]]\ngroup_name = \"d\"\nports = \"90-80\"\ndescription = \"bad <chars>\"\n\
         [[security_group_patch]]\ngroup_tags = {{ app = \"db\" }}\nports = \"5432\"\n"
    );
    let p = problems(&text);
    let at = |path: &str| p.iter().any(|x| x.path == path);
    assert!(at("security_group_patch[0]"), "{p:#?}");
    assert!(at("security_group_patch[1].group_id"), "{p:#?}");
    assert!(at("security_group_patch[1].ports"), "{p:#?}");
    assert!(at("security_group_patch[2].ports"), "{p:#?}");
    assert!(at("security_group_patch[3].protocol"), "{p:#?}");
    assert!(at("security_group_patch[4].ports"), "{p:#?}");
    assert!(at("security_group_patch[4].description"), "{p:#?}");
    assert!(!at("security_group_patch[5]") && !p.iter().any(|x| x.path.starts_with("security_group_patch[5]")));
}

#[test]
fn replacement_and_karpenter_rules() {
    let text = format!(
        "{MIN}[replacement]\nbatch_size = 0\ndrain_timeout = \"soon\"\nnode_groups = \"some\"\n\
         [karpenter]\nreserved_enis = 0\nnode_classes = [\"default\"]\n"
    );
    let got = paths(&text);
    for want in [
        "replacement.batch_size",
        "replacement.drain_timeout",
        "replacement.node_groups",
        "karpenter.reserved_enis",
        "karpenter.node_classes",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want} in {got:?}");
    }
    let spec = parse(
        &format!("{MIN}[replacement]\nnode_groups = [\"system\"]\nnode_pools = \"none\"\n"),
        &Overrides::default(),
    )
    .unwrap();
    assert!(spec.replacement.node_groups.selects("system"));
    assert!(!spec.replacement.node_groups.selects("other"));
    assert!(!spec.replacement.node_pools.selects("default"));
}

#[test]
fn problems_render_with_path_and_fix() {
    let p = problems(&format!("{MIN}[replacement]\nbatch_size = 0\n"));
    let s = p[0].to_string();
    assert!(s.starts_with("replacement.batch_size: "), "{s}");
    assert!(s.contains("fix: "), "{s}");
}

/// A plan approved before `[control_plane]` existed must keep its
/// fingerprint: the section is left out of the spec at its default.
#[test]
fn the_default_control_plane_section_is_not_in_the_fingerprint() {
    let spec = parse(&repo_file("plans/seed-ap-northeast-2.toml"), &Overrides::default()).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("control_plane"), "{json}");
    assert!(!json.contains("control_plane_reach"), "{json}");
    let gated_off = format!(
        "{}\n[control_plane]\ngate = false\n",
        repo_file("plans/seed-ap-northeast-2.toml")
    );
    let spec = parse(&gated_off, &Overrides::default()).unwrap();
    assert!(serde_json::to_string(&spec).unwrap().contains("control_plane"));
}
