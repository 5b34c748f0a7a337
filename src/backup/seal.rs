//! The encrypted envelope of a backup: the OpenPGP message GnuPG 2.2 reads
//! (one v3 PKESK per recipient, then a SEIPD v1 packet with MDC around one
//! binary literal data packet), written at the speed of AES-256-CFB on one
//! core.
//!
//! Why not rpgp's `MessageBuilder`, which kt used before: its SEIPD v1
//! encryptor hashes (SHA-1, for the MDC) and encrypts (AES-CFB) each 8 KiB
//! on one thread, so it cannot pass ~450 MB/s here however it is fed
//! (BENCHMARKS.md, issue 17, has the profile). Here the reading, the SHA-1
//! and the CFB run on three threads joined by small bounded channels, so
//! the message is written as fast as CFB encrypts (~800 MB/s).
//!
//! What stays rpgp's: the session key, every PKESK packet, and the bytes of
//! every packet header and length (`PacketHeader`, `PacketLength`,
//! `LiteralDataHeader`, the SEIPD version byte). What is computed here is
//! only the SEIPD v1 body, with the RustCrypto primitives rpgp itself uses
//! (`aes`, `cfb-mode`, `sha1`): a random prefix with its quick check, CFB
//! with a zero IV over prefix, plaintext and MDC packet, the MDC being the
//! SHA-1 of prefix, plaintext and the MDC packet's header. Both readers of
//! backups (GnuPG, and kt's restore through rpgp) are the tests of it.

use std::io::{Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use aes::Aes256;
use cfb_mode::cipher::KeyIvInit;
use cfb_mode::BufEncryptor;
use pgp::composed::Esk;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{DataMode, LiteralDataHeader, PacketHeader, PublicKeyEncryptedSessionKey, SymEncryptedProtectedDataConfig};
use pgp::ser::Serialize;
use pgp::types::{KeyDetails, PacketHeaderVersion, PacketLength, Tag};
use sha1::{Digest, Sha1};

use crate::backup::recipients::Recipient;
use crate::error::{Error, Result};

/// Partial-length chunks of the literal and the encrypted packet: rpgp's
/// own default, which GnuPG reads.
const CHUNK: u32 = pgp::composed::DEFAULT_PARTIAL_CHUNK_SIZE;

/// The unit that travels between the threads.
const BLOCK: usize = 1 << 20;

/// Blocks in flight between two threads: a few MiB of memory in all.
const DEPTH: usize = 4;

/// Writes `plaintext` (exactly `len` bytes) to `out` as an OpenPGP message
/// encrypted to every recipient.
pub fn encrypt(recipients: &[Recipient], plaintext: impl Read + Send, len: u64, out: &mut impl Write) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot write the backup").because(e);
    // A message with no PKESK could be read by nobody: a caller's bug, not
    // a backup.
    if recipients.is_empty() {
        return Err(Error::problem("internal error: a backup encrypted to no recipient"));
    }
    let mut rng = rand::thread_rng();
    let alg = SymmetricKeyAlgorithm::AES256;
    let session_key = alg.new_session_key(&mut rng);
    for r in recipients {
        let result = match &r.subkey_fingerprint {
            Some(fpr) => {
                let sub = r
                    .key
                    .public_subkeys
                    .iter()
                    .find(|s| format!("{:X}", s.key.fingerprint()).eq_ignore_ascii_case(fpr))
                    .ok_or_else(|| Error::env(format!("the subkey {fpr} went missing")))?;
                PublicKeyEncryptedSessionKey::from_session_key_v3(&mut rng, &session_key, alg, &sub.key)
            }
            None => PublicKeyEncryptedSessionKey::from_session_key_v3(&mut rng, &session_key, alg, &r.key.primary_key),
        };
        let pkesk = result.map_err(|e| Error::usage(format!("cannot encrypt to {:?}", r.label)).because(e))?;
        Esk::PublicKeyEncryptedSessionKey(pkesk).to_writer(out).map_err(|e| failed(&e))?;
    }

    // The plaintext of the encrypted packet: one literal data packet.
    let literal_header = {
        let mut bytes = Vec::new();
        LiteralDataHeader::new(DataMode::Binary).to_writer(&mut bytes).map_err(|e| failed(&e))?;
        bytes
    };
    let literal_body = literal_header.len() as u64 + len;
    let literal_len = framed_len(Tag::LiteralData, literal_body).map_err(|e| failed(&e))?;
    let literal = Framed::new(Tag::LiteralData, literal_body, std::io::Cursor::new(literal_header).chain(Exact::new(plaintext, len)));

    // The encrypted packet's body: version, prefix, plaintext, MDC packet.
    let mdc_header = header_bytes(Tag::ModDetectionCode, PacketLength::Fixed(20)).map_err(|e| failed(&e))?;
    let version = {
        let mut bytes = Vec::new();
        SymEncryptedProtectedDataConfig::V1.to_writer(&mut bytes).map_err(|e| failed(&e))?;
        bytes
    };
    let mut prefix = [0u8; 18];
    rand::Rng::fill(&mut rng, &mut prefix[..16]);
    prefix[16] = prefix[14]; // the quick check: the last two random bytes again
    prefix[17] = prefix[15];
    let seipd_body = version.len() as u64 + prefix.len() as u64 + literal_len + mdc_header.len() as u64 + 20;

    let mut hasher = Sha1::new();
    hasher.update(prefix);
    let mut cfb = BufEncryptor::<Aes256>::new_from_slices(session_key.as_ref(), &[0u8; 16]).map_err(|e| failed(&e))?;
    cfb.encrypt(&mut prefix);

    let (to_hasher, from_reader) = sync_channel::<Msg>(DEPTH);
    let (to_encryptor, from_hasher) = sync_channel::<Msg>(DEPTH);
    let (recycle, recycled) = channel::<Vec<u8>>();
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || read_blocks(literal, to_hasher, recycled));
        scope.spawn(move || hash_blocks(hasher, from_reader, to_encryptor));
        let mut framed = Framed::new(Tag::SymEncryptedProtectedData, seipd_body, &mut *out);
        framed.write_all(&version).map_err(|e| failed(&e))?;
        framed.write_all(&prefix).map_err(|e| failed(&e))?;
        let mut hasher = encrypt_blocks(&mut cfb, from_hasher, recycle, &mut framed)?;
        hasher.update(&mdc_header);
        let mut mdc = mdc_header.clone();
        mdc.extend_from_slice(&hasher.finalize());
        cfb.encrypt(&mut mdc);
        framed.write_all(&mdc).map_err(|e| failed(&e))?;
        framed.finish().map_err(|e| failed(&e))
    })?;
    out.flush().map_err(|e| failed(&e))
}

/// What travels from the reader to the hasher and on to the encryptor.
enum Msg {
    Block(Vec<u8>),
    /// The plaintext ended; the hasher's state rides along to the encryptor.
    End(Option<Sha1>),
    Failed(std::io::Error),
}

/// Thread 1: the framed plaintext, in blocks.
fn read_blocks(mut source: impl Read, to_hasher: SyncSender<Msg>, recycled: Receiver<Vec<u8>>) {
    loop {
        let mut block = recycled.try_recv().unwrap_or_else(|_| Vec::with_capacity(BLOCK));
        block.resize(BLOCK, 0);
        let msg = match read_full(&mut source, &mut block) {
            Ok(0) => Msg::End(None),
            Ok(n) => {
                block.truncate(n);
                Msg::Block(block)
            }
            Err(e) => Msg::Failed(e),
        };
        let last = !matches!(msg, Msg::Block(_));
        if to_hasher.send(msg).is_err() || last {
            return; // done, or the encryptor gave up
        }
    }
}

/// Thread 2: SHA-1 over the plaintext, for the MDC.
fn hash_blocks(mut hasher: Sha1, from_reader: Receiver<Msg>, to_encryptor: SyncSender<Msg>) {
    for msg in from_reader {
        let msg = match msg {
            Msg::Block(block) => {
                hasher.update(&block);
                Msg::Block(block)
            }
            Msg::End(_) => {
                let _ = to_encryptor.send(Msg::End(Some(hasher)));
                return;
            }
            failed => failed,
        };
        if to_encryptor.send(msg).is_err() {
            return;
        }
    }
}

/// The calling thread: CFB over the plaintext, written out; returns the
/// SHA-1 state once the plaintext has ended.
fn encrypt_blocks(
    cfb: &mut BufEncryptor<Aes256>,
    from_hasher: Receiver<Msg>,
    recycle: Sender<Vec<u8>>,
    out: &mut impl Write,
) -> Result<Sha1> {
    let failed = |e: &dyn std::fmt::Display| Error::env("cannot write the backup").because(e);
    for msg in from_hasher {
        match msg {
            Msg::Block(mut block) => {
                cfb.encrypt(&mut block);
                out.write_all(&block).map_err(|e| failed(&e))?;
                let _ = recycle.send(block);
            }
            Msg::End(Some(hasher)) => return Ok(hasher),
            Msg::End(None) => break,
            Msg::Failed(e) => return Err(failed(&e)),
        }
    }
    Err(Error::env("cannot write the backup").because("the encryption threads stopped early"))
}

/// Fills `buf` as far as the reader goes.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// rpgp's encoding of a packet header (tag and length).
fn header_bytes(tag: Tag, length: PacketLength) -> pgp::errors::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PacketHeader::from_parts(PacketHeaderVersion::New, tag, length)?.to_writer(&mut bytes)?;
    Ok(bytes)
}

/// rpgp's encoding of a partial-body length.
fn length_bytes(length: PacketLength) -> pgp::errors::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    length.to_writer_new(&mut bytes)?;
    Ok(bytes)
}

/// How a packet of `body` bytes is cut: partial chunks of [`CHUNK`] while
/// more than that is left, then one fixed length for the rest. Each
/// boundary yields the header bytes that come before the next piece.
struct Chunker {
    tag: Tag,
    first: bool,
    /// Body bytes not yet announced by a header.
    unannounced: u64,
    /// Body bytes of the current piece not yet passed.
    in_piece: u64,
}

impl Chunker {
    fn new(tag: Tag, body: u64) -> Chunker {
        Chunker { tag, first: true, unannounced: body, in_piece: 0 }
    }

    /// The header of the next piece, if the current one is used up and
    /// body is left.
    fn next_header(&mut self) -> pgp::errors::Result<Option<Vec<u8>>> {
        if self.in_piece > 0 || self.unannounced == 0 {
            return Ok(None);
        }
        let (length, size) = if self.unannounced > CHUNK as u64 {
            (PacketLength::Partial(CHUNK), CHUNK as u64)
        } else {
            (PacketLength::Fixed(self.unannounced as u32), self.unannounced)
        };
        let bytes = if self.first { header_bytes(self.tag, length)? } else { length_bytes(length)? };
        self.first = false;
        self.unannounced -= size;
        self.in_piece = size;
        Ok(Some(bytes))
    }
}

/// The whole length of a packet of `body` bytes, headers included.
fn framed_len(tag: Tag, body: u64) -> pgp::errors::Result<u64> {
    let mut chunker = Chunker::new(tag, body);
    let mut total = body;
    while let Some(header) = chunker.next_header()? {
        total += header.len() as u64;
        chunker.in_piece = 0;
    }
    Ok(total)
}

/// A packet of a known body length, as a reader over its body's reader
/// or as a writer into its output: the headers go in between.
struct Framed<T> {
    chunker: Chunker,
    inner: T,
    /// Header bytes still to be read (reader side).
    pending: std::io::Cursor<Vec<u8>>,
}

impl<T> Framed<T> {
    fn new(tag: Tag, body: u64, inner: T) -> Framed<T> {
        Framed { chunker: Chunker::new(tag, body), inner, pending: std::io::Cursor::new(Vec::new()) }
    }
}

impl<R: Read> Read for Framed<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if (self.pending.position() as usize) < self.pending.get_ref().len() {
            return self.pending.read(buf);
        }
        if let Some(header) = self.chunker.next_header().map_err(std::io::Error::other)? {
            self.pending = std::io::Cursor::new(header);
            return self.pending.read(buf);
        }
        if self.chunker.in_piece == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.chunker.in_piece.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive ended early"));
        }
        self.chunker.in_piece -= n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Framed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(header) = self.chunker.next_header().map_err(std::io::Error::other)? {
            self.inner.write_all(&header)?;
        }
        if self.chunker.in_piece == 0 {
            return Err(std::io::Error::other("more data than the packet's length"));
        }
        let max = buf.len().min(self.chunker.in_piece.min(usize::MAX as u64) as usize);
        let n = self.inner.write(&buf[..max])?;
        self.chunker.in_piece -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Framed<W> {
    /// Checks that exactly the announced body was written.
    fn finish(&mut self) -> std::io::Result<()> {
        if self.chunker.in_piece != 0 || self.chunker.unannounced != 0 {
            return Err(std::io::Error::other("less data than the packet's length"));
        }
        self.inner.flush()
    }
}

/// A reader that must yield exactly `left` bytes: fewer is an error, and
/// more are never read.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R> Exact<R> {
    fn new(inner: R, left: u64) -> Exact<R> {
        Exact { inner, left }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive ended early"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a framed packet back: (tag, body).
    fn unframe(bytes: &[u8]) -> (u8, Vec<u8>) {
        let tag = bytes[0] & 0x3f;
        let mut at = 1;
        let mut body = Vec::new();
        loop {
            let o1 = bytes[at] as usize;
            at += 1;
            let (len, more) = match o1 {
                0..=191 => (o1, false),
                192..=223 => {
                    let l = ((o1 - 192) << 8) + bytes[at] as usize + 192;
                    at += 1;
                    (l, false)
                }
                255 => {
                    let l = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                    at += 4;
                    (l, false)
                }
                _ => (1 << (o1 & 0x1f), true),
            };
            body.extend_from_slice(&bytes[at..at + len]);
            at += len;
            if !more {
                assert_eq!(at, bytes.len(), "trailing bytes");
                return (tag, body);
            }
        }
    }

    #[test]
    fn frames_any_length_both_ways() {
        let c = CHUNK as usize;
        for len in [1, 191, 192, 8383, 8384, c - 1, c, c + 1, 2 * c, 3 * c + 7] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let expected = framed_len(Tag::LiteralData, len as u64).unwrap();

            let mut read = Vec::new();
            Framed::new(Tag::LiteralData, len as u64, &body[..]).read_to_end(&mut read).unwrap();
            assert_eq!(read.len() as u64, expected, "len {len}");
            assert_eq!(unframe(&read), (11, body.clone()), "len {len}");

            let mut written = Vec::new();
            let mut w = Framed::new(Tag::SymEncryptedProtectedData, len as u64, &mut written);
            for piece in body.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(unframe(&written), (18, body), "len {len}");
        }
    }

    /// A recipient with an Ed25519 key and a Curve25519 encryption
    /// subkey (quick to make), and its secret key.
    fn recipient() -> (Recipient, pgp::composed::SignedSecretKey) {
        use pgp::composed::{Deserializable, SignedSecretKey};
        let generated = crate::pgp::generate_key(crate::pgp::KeySpec::Ed25519, "Seal Test <seal@example.com>").unwrap();
        let secret = SignedSecretKey::from_bytes(&generated.secret[..]).unwrap();
        let key = crate::pgp::parse_public_key(&generated.public).unwrap();
        let sub = format!("{:X}", key.public_subkeys[0].key.fingerprint());
        let primary = format!("{:X}", key.primary_key.fingerprint());
        (Recipient { label: "seal".into(), primary_fingerprint: primary, key, subkey_fingerprint: Some(sub) }, secret)
    }

    fn sealed(r: &Recipient, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt(std::slice::from_ref(r), plaintext, plaintext.len() as u64, &mut out).unwrap();
        out
    }

    fn opened(secret: &pgp::composed::SignedSecretKey, message: &[u8]) -> std::io::Result<Vec<u8>> {
        let msg = pgp::composed::Message::from_bytes(message).map_err(std::io::Error::other)?;
        let mut msg = msg.decrypt(&pgp::types::Password::empty(), secret).map_err(std::io::Error::other)?;
        msg.as_data_vec()
    }

    /// Plaintext lengths at every edge of the framing (the literal body
    /// and the encrypted body each at one chunk, one short, one over, two
    /// chunks) and of the threads' blocks: rpgp reads each back whole,
    /// with its MDC checked.
    #[test]
    fn rpgp_decrypts_every_edge_length() {
        let (r, secret) = recipient();
        let literal_header = {
            let mut bytes = Vec::new();
            LiteralDataHeader::new(DataMode::Binary).to_writer(&mut bytes).unwrap();
            bytes.len()
        };
        let c = CHUNK as usize;
        // SEIPD body = version (1) + prefix (18) + framed literal + MDC (22).
        let seipd_body = |len: usize| 1 + 18 + framed_len(Tag::LiteralData, (literal_header + len) as u64).unwrap() as usize + 22;
        let seipd_at = |target: usize| (0..target).rev().find(|&l| seipd_body(l) <= target).unwrap();
        let mut lengths = vec![0, 1, 15, 16, 17, c - literal_header - 1, c - literal_header, c - literal_header + 1];
        lengths.extend([2 * c - literal_header, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3]);
        for target in [c, 2 * c] {
            let l = seipd_at(target);
            assert_eq!(seipd_body(l), target, "no length puts the encrypted body at {target}");
            lengths.extend([l - 1, l, l + 1]);
        }
        for len in lengths {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let message = sealed(&r, &plaintext);
            let back = opened(&secret, &message).unwrap_or_else(|e| panic!("len {len}: {e}"));
            assert!(back == plaintext, "len {len}: a different plaintext came back");
        }
    }

    /// A changed ciphertext byte anywhere (the prefix, the data, the MDC)
    /// fails rpgp's checks instead of yielding data.
    #[test]
    fn a_changed_byte_fails_the_mdc() {
        let (r, secret) = recipient();
        let plaintext = vec![0x5au8; 3 * CHUNK as usize];
        let message = sealed(&r, &plaintext);
        assert_eq!(opened(&secret, &message).unwrap(), plaintext);
        for at in [message.len() / 2, message.len() - 1, message.len() - 21] {
            let mut bad = message.clone();
            bad[at] ^= 0x01;
            assert!(opened(&secret, &bad).is_err(), "a flipped byte at {at} of {} went unnoticed", message.len());
        }
    }

    /// Two messages never share a session key: the first one's PKESK in
    /// front of the second one's encrypted packet decrypts to nothing.
    #[test]
    fn each_message_has_its_own_session_key() {
        let (r, secret) = recipient();
        /// The length of the first packet (a PKESK: one fixed length).
        fn first_packet(m: &[u8]) -> usize {
            if m[0] & 0x40 != 0 {
                match m[1] {
                    0..=191 => 2 + m[1] as usize,
                    192..=223 => 3 + (((m[1] as usize) - 192) << 8) + m[2] as usize + 192,
                    _ => 6 + u32::from_be_bytes(m[2..6].try_into().unwrap()) as usize,
                }
            } else {
                let n = [1, 2, 4][(m[0] & 3) as usize];
                1 + n + m[1..1 + n].iter().fold(0usize, |v, b| (v << 8) | *b as usize)
            }
        }
        let (a, b) = (sealed(&r, b"same"), sealed(&r, b"same"));
        assert_eq!(opened(&secret, &a).unwrap(), b"same");
        let (pa, pb) = (first_packet(&a), first_packet(&b));
        let spliced = [&a[..pa], &b[pb..]].concat();
        assert_eq!(opened(&secret, &[&b[..pb], &b[pb..]].concat()).unwrap(), b"same");
        assert!(opened(&secret, &spliced).is_err(), "two messages share a session key");
    }

    /// A plaintext that fails, ends early, panics, or an output that
    /// fails, half way through: an error (or the panic) comes out, never
    /// a message that looks complete, and no thread is left waiting.
    #[test]
    fn a_failure_on_any_thread_is_never_a_message() {
        struct Failing(usize, &'static str);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    match self.1 {
                        "panic" => panic!("the reader panicked"),
                        "eof" => return Ok(0),
                        _ => return Err(std::io::Error::other("disk on fire")),
                    }
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(std::io::Error::other("no space left"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (r, _) = recipient();
        let len = 5 * BLOCK as u64;
        for how in ["error", "eof"] {
            let mut out = Vec::new();
            assert!(encrypt(std::slice::from_ref(&r), Failing(3 * BLOCK + 5, how), len, &mut out).is_err(), "{how}");
        }
        let panicked = std::panic::catch_unwind(|| {
            let mut out = Vec::new();
            let _ = encrypt(std::slice::from_ref(&r), Failing(BLOCK + 5, "panic"), len, &mut out);
        });
        assert!(panicked.is_err(), "a reader's panic became a result");
        let plaintext = vec![0u8; 5 * BLOCK];
        assert!(encrypt(std::slice::from_ref(&r), &plaintext[..], len, &mut Full(2 * BLOCK)).is_err());
    }

    #[test]
    fn refuses_short_and_long_bodies() {
        let mut out = Vec::new();
        let mut w = Framed::new(Tag::LiteralData, 10, &mut out);
        w.write_all(b"12345").unwrap();
        assert!(w.finish().is_err());
        assert!(w.write_all(b"1234567").is_err());
        let mut read = Vec::new();
        assert!(Framed::new(Tag::LiteralData, 10, &b"123"[..]).read_to_end(&mut read).is_err());
        assert!(Exact::new(&b"123"[..], 4).read_to_end(&mut Vec::new()).is_err());
        let mut two = Vec::new();
        Exact::new(&b"123"[..], 2).read_to_end(&mut two).unwrap();
        assert_eq!(two, b"12");
    }
}
