//! Proof documents: what the API hands out and `gridmesh verify` checks, and the verification
//! itself (offline against a root, or against the root anchored on chain).

use std::fmt;

use gridmesh_core::{Period, SiteId};
use gridmesh_settlement::Line;
use gridmesh_settlement::merkle::{Hash, fold, leaf};
use serde::{Deserialize, Serialize};

use crate::api::AnchorOut;

/// `0x` and lowercase hex.
#[must_use]
pub fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// A settlement line with everything needed to check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofDocument {
    /// The period.
    pub period: Period,
    /// Its index (quarter hours since 1970), the key on chain.
    pub period_index: i64,
    /// The site.
    pub site: SiteId,
    /// The canonical line, hex.
    pub line: String,
    /// The line, decoded (for reading; the hex is what counts).
    pub decoded: Line,
    /// Position in the tree.
    pub index: usize,
    /// Sibling hashes from the leaf up, hex.
    pub proof: Vec<String>,
    /// The period's root, hex.
    pub root: String,
    /// The anchor, when recorded.
    pub anchor: Option<AnchorOut>,
}

/// A reward claim with its proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimDocument {
    /// The period.
    pub period: Period,
    /// Its index.
    pub period_index: i64,
    /// The account, hex.
    pub account: String,
    /// Token amount in 10⁻¹⁸ units, decimal.
    pub amount: String,
    /// Verified Wh behind it.
    pub verified_wh: i64,
    /// Sibling hashes, hex.
    pub proof: Vec<String>,
    /// The distribution's root, hex.
    pub root: String,
    /// `pending`, `published` or `empty`.
    pub status: String,
}

/// Why a line did not verify; each has its own exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The line is in the anchored tree.
    Included,
    /// The line and proof fold to another root: the line was changed, or the proof is wrong.
    Mismatch {
        /// What the line and proof give.
        computed: String,
        /// The anchored (or given) root.
        expected: String,
    },
}

/// A failure before a verdict could be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The proof file or answer is unreadable.
    BadInput(String),
    /// The proof is for another period or site than asked.
    WrongSubject(String),
    /// The RPC endpoint did not answer.
    Unreachable(String),
    /// The period has no anchor on chain.
    NotAnchored(String),
}

impl VerifyError {
    /// The process exit code for this failure.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::BadInput(_) => 3,
            VerifyError::WrongSubject(_) => 4,
            VerifyError::Unreachable(_) => 5,
            VerifyError::NotAnchored(_) => 6,
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::BadInput(m) => write!(f, "cannot read the proof: {m}"),
            VerifyError::WrongSubject(m) => write!(f, "wrong proof: {m}"),
            VerifyError::Unreachable(m) => write!(f, "cannot check against the chain: {m}"),
            VerifyError::NotAnchored(m) => write!(f, "not anchored: {m}"),
        }
    }
}

/// Parses a 32-byte hex hash.
///
/// # Errors
/// [`VerifyError::BadInput`] naming `what`.
pub fn parse_hash(text: &str, what: &str) -> Result<Hash, VerifyError> {
    let mut out = [0_u8; 32];
    hex::decode_to_slice(text.trim().trim_start_matches("0x"), &mut out)
        .map_err(|_| VerifyError::BadInput(format!("{what} is not 32 bytes of hex: {text:?}")))?;
    Ok(out)
}

/// Checks the document's own consistency and the subject asked for, and returns the decoded
/// line and the root the line and proof fold to.
///
/// # Errors
/// Malformed hex or line; a line for another period or site than `period`/`site`.
pub fn fold_document(
    doc: &ProofDocument,
    period: Option<Period>,
    site: Option<SiteId>,
) -> Result<(Line, Hash), VerifyError> {
    let bytes = hex::decode(doc.line.trim_start_matches("0x"))
        .map_err(|_| VerifyError::BadInput("the line is not hex".into()))?;
    let line = Line::decode(&bytes)
        .map_err(|e| VerifyError::BadInput(format!("the line is not a settlement line: {e}")))?;
    if let Some(p) = period
        && line.period != p
    {
        return Err(VerifyError::WrongSubject(format!("this proof is for period {}, not {p}", line.period)));
    }
    if let Some(s) = site
        && line.site != s
    {
        return Err(VerifyError::WrongSubject(format!("this proof is for site {}, not {s}", line.site)));
    }
    let proof = doc.proof.iter().map(|p| parse_hash(p, "a proof hash")).collect::<Result<Vec<_>, _>>()?;
    Ok((line, fold(leaf(&bytes), &proof)))
}

/// Compares a computed root with the expected one.
#[must_use]
pub fn verdict(computed: &Hash, expected: &Hash) -> Verdict {
    if computed == expected && *expected != [0; 32] {
        Verdict::Included
    } else {
        Verdict::Mismatch { computed: hex0x(computed), expected: hex0x(expected) }
    }
}
