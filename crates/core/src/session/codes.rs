//! Join codes: what a player reads out and types. Six symbols of
//! Crockford's base32 (no I, L, O, U), forgiving when typed.

use rand::Rng;

use super::Core;

/// Crockford base32 without I, L, O, U: nothing a player can misread or mistype.
pub(super) const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 6 symbols = 30 bits: about a billion codes, typed in two seconds.
pub const CODE_LEN: usize = 6;

/// Canonical form of a typed join code: upper case, no separators, O→0, I/L→1.
pub fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '_' | '.'))
        .take(32)
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

impl Core {
    /// A join code no session on this node has.
    pub(super) fn new_code(&mut self) -> String {
        loop {
            let code: String = (0..CODE_LEN)
                .map(|_| CODE_ALPHABET[self.rng.random_range(0..32)] as char)
                .collect();
            if !self.codes.contains_key(&code) {
                return code;
            }
        }
    }
}
