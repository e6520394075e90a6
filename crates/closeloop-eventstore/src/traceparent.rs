//! W3C Trace Context `traceparent` values (`00-<trace-id>-<parent-id>-<flags>`).

/// Returns the value if it is a well-formed version-00 `traceparent`.
pub fn parse(value: &str) -> Option<&str> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    match parts.as_slice() {
        [v, trace, parent, flags]
            if *v == "00"
                && hex(trace, 32)
                && nonzero(trace)
                && hex(parent, 16)
                && nonzero(parent)
                && hex(flags, 2) =>
        {
            Some(value.trim())
        }
        _ => None,
    }
}

/// A new sampled root `traceparent` with random ids.
pub fn new_root() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// A child of `parent`: same trace id, new span id, same flags.
pub fn child_of(parent: &str) -> String {
    match parse(parent) {
        Some(p) => {
            let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
            format!("00-{}-{span}-{}", &p[3..35], &p[53..55])
        }
        None => new_root(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_w3c_example_and_rejects_garbage() {
        let ex = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(parse(ex), Some(ex));
        assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse("zz").is_none());
        let c = child_of(ex);
        assert!(parse(&c).is_some());
        assert_eq!(&c[3..35], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parse(&new_root()).is_some());
    }
}
