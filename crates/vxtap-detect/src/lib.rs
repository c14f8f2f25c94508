//! Attack detection for vxtap: a pure function from a reconstructed HTTP request to findings.
//!
//! The detector sees every request, whether rebuilt from packets or received as an HTTP mirror copy,
//! and reports each matched rule as a [`Finding`], which the engine writes as an EVE `alert` event.
//! This crate holds the interface and the rule set; the built-in set is empty until the rules land.
//!
//! ```
//! use vxtap_detect::Detector;
//! let detector = Detector::builtin();
//! let request = vxtap_http::Request::default();
//! assert!(detector.inspect(&request).is_empty());
//! ```

use vxtap_http::Request;

/// One rule matched by one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The rule's signature id.
    pub signature_id: u32,
    /// The rule's revision.
    pub rev: u32,
    /// Human-readable rule name.
    pub signature: String,
    /// Suricata-style category text.
    pub category: String,
    /// 1 (high) to 3 (low).
    pub severity: u8,
    /// Attack classes, e.g. `sqli`.
    pub attack_class: Vec<String>,
    /// Where the match was found, e.g. `args.q`, `headers.user-agent`.
    pub location: Vec<String>,
    /// The normalised fragment that matched.
    pub fragment: String,
}

/// A loaded rule set, shared read-only by all workers.
#[derive(Clone, Debug, Default)]
pub struct Detector {}

impl Detector {
    /// The built-in rule set.
    pub fn builtin() -> Detector {
        Detector::default()
    }

    /// Every rule the request matches.
    pub fn inspect(&self, _request: &Request) -> Vec<Finding> {
        Vec::new()
    }
}
