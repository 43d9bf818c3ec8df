//! Property tests of the SSE parser, the first code to touch upstream stream bytes:
//! arbitrary bytes in arbitrary splits never panic, never hold more than the line and event
//! bounds, and parse the same however they are split; the writer's frames parse back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: failing loudly is the point

use noviqi::sse::{SseError, SseEvent, SseParser, write_event};
use proptest::prelude::*;

const MAX_LINE: usize = 48;
const MAX_EVENT: usize = 96;

/// Bytes biased towards SSE syntax so the interesting paths are hit often.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just("é✓".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..20),
    ];
    proptest::collection::vec(token, 0..60).prop_map(|v| v.concat())
}

/// Parses `input` cut at `cuts`; checks the memory bounds after every push.
fn parse(input: &[u8], cuts: &[usize]) -> (Vec<SseEvent>, Option<SseError>, Option<SseEvent>) {
    let mut p = SseParser::with_limits(MAX_LINE, MAX_EVENT);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let r = p.push(&input[start..cut], &mut out);
        assert!(
            p.buffered_len() <= MAX_LINE,
            "line buffer {}",
            p.buffered_len()
        );
        assert!(
            p.pending_event_len() <= MAX_EVENT,
            "event {}",
            p.pending_event_len()
        );
        if let Err(e) = r {
            return (out, Some(e), None);
        }
        start = cut;
    }
    let last = p.finish();
    (out, None, last)
}

fn sorted_cuts(mut cuts: Vec<usize>, len: usize) -> Vec<usize> {
    for c in cuts.iter_mut() {
        *c %= len + 1;
    }
    cuts.sort_unstable();
    cuts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_parses_like_the_whole(input in sse_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let cuts = sorted_cuts(cuts, input.len());
        prop_assert_eq!(parse(&input, &cuts), parse(&input, &[]));
    }

    #[test]
    fn raw_bytes_never_panic_or_grow(input in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(any::<usize>(), 0..16)) {
        let cuts = sorted_cuts(cuts, input.len());
        let (events, _, _) = parse(&input, &cuts);
        for e in events {
            prop_assert!(e.data.len() <= MAX_EVENT);
        }
    }

    #[test]
    fn writer_frames_parse_back(name in proptest::option::of("[^\r\n]{0,10}"), data in any::<String>()) {
        let mut buf = Vec::new();
        write_event(&mut buf, name.as_deref(), &data);
        let mut p = SseParser::new(1 << 20);
        let mut out = Vec::new();
        p.push(&buf, &mut out).unwrap();
        prop_assert_eq!(p.buffered_len(), 0);
        prop_assert_eq!(out.len(), 1);
        let want_data = data.replace("\r\n", "\n").replace('\r', "\n");
        let want_name = name.filter(|n| !n.is_empty());
        prop_assert_eq!(&out[0], &SseEvent { event: want_name, data: want_data });
    }
}

#[test]
fn endless_line_is_refused_at_the_bound() {
    let mut p = SseParser::new(1024);
    let mut out = Vec::new();
    let chunk = [b'a'; 100];
    let mut err = None;
    for _ in 0..100 {
        if let Err(e) = p.push(&chunk, &mut out) {
            err = Some(e);
            break;
        }
        assert!(p.buffered_len() <= 1024);
    }
    assert_eq!(err, Some(SseError::LineTooLong { limit: 1024 }));
}

#[test]
fn endless_event_is_refused_at_the_bound() {
    let mut p = SseParser::with_limits(64, 1000);
    let mut out = Vec::new();
    let mut err = None;
    for _ in 0..1000 {
        if let Err(e) = p.push(b"data: 0123456789\n", &mut out) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(SseError::EventTooLarge { limit: 1000 }));
    assert!(out.is_empty());
}
