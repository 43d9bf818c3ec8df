//! Glob patterns as the config writes them (`*` any run, `?` one character): key model
//! allowlists, `[[prices]]` entries and the built-in price table. Owns no state.

/// Glob match with `*` (any run, including empty) and `?` (one character); everything else is
/// literal. Iterative with one backtrack point, so it is linear-ish and cannot blow the stack;
/// it walks both strings by character without copying them (it runs on every request).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let char_at = |s: &str, at: usize| s[at..].chars().next();
    // Byte offsets into `pattern` and `text`, always on character boundaries.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(t) = char_at(text, ti) {
        match char_at(pattern, pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(p) if p == '?' || p == t => {
                pi += p.len_utf8();
                ti += t.len_utf8();
            }
            _ => match star {
                Some((sp, st)) => {
                    let next = st + char_at(text, st).map_or(1, char::len_utf8);
                    pi = sp + 1;
                    ti = next;
                    star = Some((sp, next));
                }
                None => return false,
            },
        }
    }
    pattern[pi..].chars().all(|c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "gpt-4o"));
        assert!(glob_match("gpt-*", "gpt-4o"));
        assert!(!glob_match("gpt-*", "claude"));
        assert!(glob_match("claude-*-4?", "claude-sonnet-45"));
        assert!(!glob_match("claude-*-4?", "claude-sonnet-4"));
        assert!(glob_match("openai/*", "openai/gpt-4o"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("é?*ü", "éxyzü"));
        assert!(glob_match("?", "ü"));
        assert!(!glob_match("??", "ü"));
        assert!(glob_match("*ab", "aaab"));
    }

    /// The matcher as first written, over copied `char` vectors: the reference.
    fn reference(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == t[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_the_reference(
            pattern in "[a-cé*?]{0,8}",
            text in "[a-cé]{0,10}",
        ) {
            proptest::prop_assert_eq!(glob_match(&pattern, &text), reference(&pattern, &text));
        }
    }
}
