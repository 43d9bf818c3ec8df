//! The two commands every limited request sends (`admit` before the upstream call, `settle`
//! after it), written straight into a reused buffer in Redis's wire format (RESP: an array of
//! bulk strings), and the admit's reply read back without an allocation.
//!
//! Why not `redis::Cmd` and `redis::Script`: they allocate each argument, copy them into a
//! command, pack that into a fresh buffer, and the keys were `format!`ed before that — about a
//! quarter of a clustered request's extra instructions (`scripts/callgrind`). The connection,
//! its handshake, TLS and the reply parser stay the `redis` crate's.
//!
//! Owns nothing: the buffer is the pooled connection's.

/// A command being written into `buf` (cleared first).
pub(super) struct Packed<'a> {
    buf: &'a mut Vec<u8>,
    /// Arguments announced and not written yet: a miscount would desync the connection.
    left: usize,
}

impl<'a> Packed<'a> {
    /// Starts a command of `args` arguments (its name included).
    pub(super) fn new(buf: &'a mut Vec<u8>, args: usize) -> Packed<'a> {
        buf.clear();
        buf.push(b'*');
        buf.extend_from_slice(itoa::Buffer::new().format(args).as_bytes());
        buf.extend_from_slice(b"\r\n");
        Packed { buf, left: args }
    }

    /// One argument made of `parts` end to end.
    pub(super) fn arg(&mut self, parts: &[&[u8]]) -> &mut Self {
        debug_assert!(self.left > 0, "more arguments than announced");
        self.left = self.left.saturating_sub(1);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.buf.push(b'$');
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// One argument, a decimal number.
    pub(super) fn num(&mut self, n: impl itoa::Integer) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        self.arg(&[digits.format(n).as_bytes()])
    }
}

impl Drop for Packed<'_> {
    fn drop(&mut self) {
        debug_assert_eq!(self.left, 0, "fewer arguments than announced");
    }
}

/// The integers of a reply made of decimal numbers separated by spaces (the `admit` script's),
/// `N` of them; `None` when the reply has another shape.
pub(super) fn numbers<const N: usize>(reply: &redis::Value) -> Option<[u64; N]> {
    let bytes = match reply {
        redis::Value::BulkString(bytes) => bytes.as_slice(),
        redis::Value::SimpleString(s) => s.as_bytes(),
        _ => return None,
    };
    let mut out = [0u64; N];
    let mut fields = bytes.split(|&b| b == b' ');
    for slot in &mut out {
        let field = fields.next()?;
        *slot = std::str::from_utf8(field).ok()?.parse().ok()?;
    }
    fields.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_redis_cmd_writes() {
        let mut buf = Vec::new();
        Packed::new(&mut buf, 4)
            .arg(&[b"EVALSHA"])
            .arg(&[b"ab", b"", b"c"])
            .num(12u64)
            .arg(&[]);
        let expected = redis::cmd("EVALSHA")
            .arg("abc")
            .arg(12)
            .arg("")
            .get_packed_command();
        assert_eq!(buf, expected);
        // Reused: cleared, not appended to.
        Packed::new(&mut buf, 1).arg(&[b"PING"]);
        assert_eq!(buf, redis::cmd("PING").get_packed_command());
    }

    #[test]
    fn reads_the_admit_reply() {
        let reply = redis::Value::BulkString(b"1 0 18446744073709551615 3".to_vec());
        assert_eq!(numbers::<4>(&reply), Some([1, 0, u64::MAX, 3]));
        assert_eq!(numbers::<3>(&reply), None, "one too many");
        assert_eq!(numbers::<5>(&reply), None, "one too few");
        let bad = redis::Value::BulkString(b"1 x".to_vec());
        assert_eq!(numbers::<2>(&bad), None);
        assert_eq!(numbers::<1>(&redis::Value::Int(1)), None);
    }
}
