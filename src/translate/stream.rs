//! A streamed answer on its way to the client: upstream bytes in, client frames out.
//!
//! [`StreamReader`] owns the bounded SSE parser and one [`StreamTranslator`]: a pass-through
//! reader ([`super::passthrough`]) or a format translator (`*_via_*`). The gateway's relay only
//! moves bytes: it feeds each upstream read to [`StreamReader::push`], writes what comes out,
//! and calls [`StreamReader::end`] at EOF. Which translator serves a plan is
//! [`super::plan::Plan::stream_reader`]'s choice.
//!
//! A stream that breaks off (EOF before its end marker, an unreadable event) gets a final
//! error frame in the client's format, never an invented `[DONE]` or `message_stop`. State
//! owned: per stream, the parser's partial line and event and the translator's state.

use crate::cost::Usage;
use crate::error::Kind;
use crate::sse::{SseEvent, SseParser};

/// Longest SSE line accepted from an upstream (a single event of a big tool call fits).
const MAX_LINE: usize = 4 * 1024 * 1024;
/// Largest single SSE event accepted from an upstream.
const MAX_EVENT: usize = 8 * 1024 * 1024;

/// One stream's reader in the client's format: feed it upstream events, tell it the upstream
/// ended, and ask how it went. Implemented by the pass-through readers and the translators.
pub trait StreamTranslator: Send {
    /// Handles one upstream event, appending complete client frames to `out`.
    fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>);
    /// The upstream ended or broke off; writes an error frame if the stream did not end
    /// properly.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// Usage reported so far, if any was.
    fn usage(&self) -> Option<Usage>;
    /// The stream ended properly.
    fn finished(&self) -> bool;
    /// The stream was ended with an error frame (the upstream's or the translator's).
    fn failed(&self) -> bool;
}

/// Where a stream stands after a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More is expected: send what was written and read again.
    More,
    /// The stream is over: properly ended, or failed with an error frame already written
    /// (`Some(kind)` when the gateway ended it, for the usage log).
    Over(Option<Kind>),
}

/// The upstream's bytes of one stream, read into the client's frames.
pub struct StreamReader {
    parser: SseParser,
    events: Vec<SseEvent>,
    translator: Box<dyn StreamTranslator>,
}

impl StreamReader {
    pub fn new(translator: Box<dyn StreamTranslator>) -> StreamReader {
        StreamReader {
            parser: SseParser::with_limits(MAX_LINE, MAX_EVENT),
            events: Vec::new(),
            translator,
        }
    }

    /// Reads one piece of the upstream's body, appending the client's frames to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Step {
        if self.parser.push(bytes, &mut self.events).is_err() {
            self.translator.finish(out);
            return Step::Over(Some(Kind::UpstreamUnreadable));
        }
        for ev in self.events.drain(..) {
            self.translator.on_event(&ev, out);
        }
        if self.over() {
            Step::Over(None)
        } else {
            Step::More
        }
    }

    /// The upstream's body ended: `Some(kind)` (and an error frame in `out`) when the stream
    /// had not ended properly.
    pub fn end(&mut self, out: &mut Vec<u8>) -> Option<Kind> {
        if let Some(ev) = self.parser.finish() {
            self.translator.on_event(&ev, out);
        }
        if self.over() {
            None
        } else {
            self.translator.finish(out);
            Some(Kind::UpstreamTruncated)
        }
    }

    /// The stream ended with the upstream's (or the translator's) error frame.
    pub fn failed(&self) -> bool {
        self.translator.failed()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }

    fn over(&self) -> bool {
        self.translator.finished() || self.translator.failed()
    }
}

/// Implements [`StreamTranslator`] by the translators' own inherent methods.
macro_rules! stream_translator {
    ($($ty:ty),*) => {$(
        impl StreamTranslator for $ty {
            fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
                <$ty>::on_event(self, ev, out)
            }
            fn finish(&mut self, out: &mut Vec<u8>) {
                <$ty>::finish(self, out)
            }
            fn usage(&self) -> Option<Usage> {
                Some(<$ty>::usage(self))
            }
            fn finished(&self) -> bool {
                <$ty>::finished(self)
            }
            fn failed(&self) -> bool {
                <$ty>::failed(self)
            }
        }
    )*};
}

stream_translator!(
    super::AnthropicToOpenAiStream,
    super::OpenAiToAnthropicStream,
    super::AnthropicToResponsesStream
);
