//! The frame format of a segment file: `[body length: u32 LE][CRC-32 of body: u32 LE][body]`,
//! where the body is `[key length: u32 LE][key][payload]`.

use std::io::{self, ErrorKind, Read};

use crate::Message;

/// The length of a frame's header: the body's length, then its CRC-32.
pub(super) const FRAME_HEADER: usize = 8;
/// The largest frame body (key length, key and payload) the on-disk format holds. A constant
/// of the format, independent of [`EmbeddedBusOptions::max_message_bytes`]: recovery judges
/// frames by it, so frames written under a higher configured limit stay valid after the limit
/// is lowered. Appends never write more than this, whatever the options say.
///
/// [`EmbeddedBusOptions::max_message_bytes`]: crate::EmbeddedBusOptions::max_message_bytes
pub const MAX_FRAME_BODY_BYTES: usize = 1 << 30;

/// The length of the body `message` is framed in.
pub(super) fn body_len(message: &Message) -> usize {
    4 + message.key.len() + message.payload.len()
}

/// Appends `message`, framed, to `out`. The caller has checked that [`body_len`] is within
/// the limit.
pub(super) fn encode(message: &Message, out: &mut Vec<u8>) {
    let body_len = body_len(message);
    let mut crc = crc32fast::Hasher::new();
    let key_len = (message.key.len() as u32).to_le_bytes();
    crc.update(&key_len);
    crc.update(&message.key);
    crc.update(&message.payload);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&key_len);
    out.extend_from_slice(&message.key);
    out.extend_from_slice(&message.payload);
}

/// The key and payload of a frame body [`read_frame`] accepted.
pub(super) fn split_body(body: bytes::Bytes) -> (bytes::Bytes, bytes::Bytes) {
    let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    (body.slice(4..4 + key_len), body.slice(4 + key_len..))
}

pub(super) enum FrameError {
    Io(io::Error),
    Invalid(String),
}

/// Reads one frame's body into `body`. `Ok(false)` at a clean end of file. A frame longer than
/// `available` bytes (header included) is torn: the file ends inside it.
pub(super) fn read_frame(
    reader: &mut impl Read,
    body: &mut Vec<u8>,
    available: u64,
) -> Result<bool, FrameError> {
    let mut header = [0u8; FRAME_HEADER];
    let mut filled = 0;
    while filled < FRAME_HEADER {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Invalid("incomplete frame header".into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if !(4..=MAX_FRAME_BODY_BYTES).contains(&len) {
        return Err(FrameError::Invalid(format!(
            "frame length {len} out of range"
        )));
    }
    if (FRAME_HEADER + len) as u64 > available {
        return Err(FrameError::Invalid("incomplete frame body".into()));
    }
    body.resize(len, 0);
    reader.read_exact(body).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => FrameError::Invalid("incomplete frame body".into()),
        _ => FrameError::Io(e),
    })?;
    if crc32fast::hash(body) != crc {
        return Err(FrameError::Invalid("checksum mismatch".into()));
    }
    let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if key_len > len - 4 {
        return Err(FrameError::Invalid(format!(
            "key length {key_len} exceeds the frame"
        )));
    }
    Ok(true)
}
