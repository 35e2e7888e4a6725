//! Storage for the machines: fixed-capacity ([`Fixed`], on `heapless`) or
//! growable up to a limit ([`Heap`], with the `alloc` feature).
//!
//! Every machine is generic over a [`Storage`], which says where its receive
//! bytes, transmit bytes and small tables live. The machine code is the same for
//! both; only the type parameter changes:
//!
//! ```
//! use vmwire_proto::{buf::Fixed, qmp};
//! // 64 KiB to receive into, 1 KiB to encode commands into, 16 commands in flight.
//! let client = qmp::Client::<Fixed<65536, 1024, 16>>::new(qmp::Config::default());
//! ```
//!
//! Whatever the storage, a buffer never grows past its limit: hitting it is a
//! typed error ([`Full`]), never a panic and never unbounded growth.

use core::fmt;

/// A buffer or table is at its limit. The operation that returned this changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The limit that was hit, in elements (bytes for byte buffers).
    pub limit: usize,
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer full (limit {})", self.limit)
    }
}

impl core::error::Error for Full {}

/// `recv_commit` was told of more bytes than `recv_buf` offered: the
/// caller's misuse, the same for every machine (its error's `kind()` is
/// `ErrorKind::Misuse`). The machine took none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitTooLarge {
    /// The bytes the caller said it had written.
    pub committed: usize,
}

impl fmt::Display for CommitTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes committed, more than recv_buf offered", self.committed)
    }
}

impl core::error::Error for CommitTooLarge {}

/// A contiguous, bounded vector: the one collection the machines need.
///
/// Implemented for [`heapless::Vec`] (capacity fixed at compile time) and, with
/// `alloc`, for [`Bounded`] (a `Vec` that grows on demand up to a limit).
pub trait Buf<T> {
    /// The elements, in order.
    fn as_slice(&self) -> &[T];
    /// The elements, in order, mutably.
    fn as_mut_slice(&mut self) -> &mut [T];
    /// The most elements this storage will ever hold.
    fn limit(&self) -> usize;
    /// Appends `item`, or returns [`Full`] and leaves the storage as it was.
    fn try_push(&mut self, item: T) -> Result<(), Full>;
    /// Shortens to `len` elements (no effect if already shorter).
    fn truncate(&mut self, len: usize);
    /// Removes and returns the element at `index`, keeping the order of the rest.
    /// Returns `None` when `index` is out of bounds.
    fn remove_at(&mut self, index: usize) -> Option<T>;
    /// Grows to at least `len` elements (filled with `T::default()`), and
    /// possibly more when it is cheap to do so. Returns [`Full`] (changing
    /// nothing) when `len` is over the limit.
    fn grow_to(&mut self, len: usize) -> Result<(), Full>
    where
        T: Clone + Default;
    /// Appends all of `items`, or nothing and [`Full`].
    fn try_extend(&mut self, items: &[T]) -> Result<(), Full>
    where
        T: Clone;
}

impl<T, const N: usize> Buf<T> for heapless::Vec<T, N> {
    fn as_slice(&self) -> &[T] {
        self
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        self
    }
    fn limit(&self) -> usize {
        N
    }
    fn try_push(&mut self, item: T) -> Result<(), Full> {
        self.push(item).map_err(|_| Full { limit: N })
    }
    fn truncate(&mut self, len: usize) {
        heapless::Vec::truncate(self, len);
    }
    fn remove_at(&mut self, index: usize) -> Option<T> {
        (index < self.len()).then(|| self.remove(index))
    }
    fn grow_to(&mut self, len: usize) -> Result<(), Full>
    where
        T: Clone + Default,
    {
        // Fixed storage is all there is: take all of it at once.
        if len > N {
            return Err(Full { limit: N });
        }
        if self.len() < N {
            self.resize(N, T::default()).map_err(|_| Full { limit: N })?;
        }
        Ok(())
    }
    fn try_extend(&mut self, items: &[T]) -> Result<(), Full>
    where
        T: Clone,
    {
        self.extend_from_slice(items).map_err(|_| Full { limit: N })
    }
}

/// A `Vec` that grows on demand, doubling, but never past `limit` elements.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Default)]
pub struct Bounded<T> {
    vec: alloc::vec::Vec<T>,
    limit: usize,
}

#[cfg(feature = "alloc")]
impl<T> Bounded<T> {
    /// An empty vector that will hold at most `limit` elements.
    pub const fn new(limit: usize) -> Self {
        Self { vec: alloc::vec::Vec::new(), limit }
    }
}

#[cfg(feature = "alloc")]
impl<T> Buf<T> for Bounded<T> {
    fn as_slice(&self) -> &[T] {
        &self.vec
    }
    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.vec
    }
    fn limit(&self) -> usize {
        self.limit
    }
    fn try_push(&mut self, item: T) -> Result<(), Full> {
        if self.vec.len() >= self.limit {
            return Err(Full { limit: self.limit });
        }
        self.vec.push(item);
        Ok(())
    }
    fn truncate(&mut self, len: usize) {
        self.vec.truncate(len);
    }
    fn remove_at(&mut self, index: usize) -> Option<T> {
        (index < self.vec.len()).then(|| self.vec.remove(index))
    }
    fn grow_to(&mut self, len: usize) -> Result<(), Full>
    where
        T: Clone + Default,
    {
        if len > self.limit {
            return Err(Full { limit: self.limit });
        }
        if len > self.vec.len() {
            // Double (from 4 KiB worth of elements) so that a stream read in
            // small pieces costs amortised O(1) per byte, capped at the limit.
            let doubled = self.vec.len().saturating_mul(2).max(4096);
            self.vec.resize(len.max(doubled).min(self.limit), T::default());
        }
        Ok(())
    }
    fn try_extend(&mut self, items: &[T]) -> Result<(), Full>
    where
        T: Clone,
    {
        if items.len() > self.limit.saturating_sub(self.vec.len()) {
            return Err(Full { limit: self.limit });
        }
        self.vec.extend_from_slice(items);
        Ok(())
    }
}

/// Where a machine keeps its receive bytes, its transmit bytes and its tables.
///
/// Two kinds are provided: [`Fixed`] (no allocator; capacities are const
/// generics) and [`Heap`] (with `alloc`; capacities come from each machine's
/// `Config` limits and memory is taken only as it is needed).
pub trait Storage {
    /// Receive buffer.
    type Rx: Buf<u8>;
    /// Transmit buffer.
    type Tx: Buf<u8>;
    /// A small table of `T` (commands in flight, queued requests, …).
    type Table<T>: Buf<T>;
    /// A receive buffer holding at most `limit` bytes (fewer if the storage is smaller).
    fn rx(limit: usize) -> Self::Rx;
    /// A transmit buffer holding at most `limit` bytes (fewer if the storage is smaller).
    fn tx(limit: usize) -> Self::Tx;
    /// A table holding at most `limit` entries (fewer if the storage is smaller).
    fn table<T>(limit: usize) -> Self::Table<T>;
}

/// Fixed-capacity storage: `RX` bytes to receive into, `TX` bytes to encode
/// into, `TABLE` table entries. Needs no allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fixed<const RX: usize, const TX: usize = 1024, const TABLE: usize = 8>;

impl<const RX: usize, const TX: usize, const TABLE: usize> Storage for Fixed<RX, TX, TABLE> {
    type Rx = heapless::Vec<u8, RX>;
    type Tx = heapless::Vec<u8, TX>;
    type Table<T> = heapless::Vec<T, TABLE>;
    fn rx(_: usize) -> Self::Rx {
        heapless::Vec::new()
    }
    fn tx(_: usize) -> Self::Tx {
        heapless::Vec::new()
    }
    fn table<T>(_: usize) -> Self::Table<T> {
        heapless::Vec::new()
    }
}

/// Growable storage on the heap, each buffer capped by the machine's configured limit.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Copy, Default)]
pub struct Heap;

#[cfg(feature = "alloc")]
impl Storage for Heap {
    type Rx = Bounded<u8>;
    type Tx = Bounded<u8>;
    type Table<T> = Bounded<T>;
    fn rx(limit: usize) -> Self::Rx {
        Bounded::new(limit)
    }
    fn tx(limit: usize) -> Self::Tx {
        Bounded::new(limit)
    }
    fn table<T>(limit: usize) -> Self::Table<T> {
        Bounded::new(limit)
    }
}

/// A sink for encoded bytes: what the writers in this crate write into.
///
/// Implemented for every [`Buf<u8>`] (so for `heapless::Vec<u8, N>`) and, with
/// `alloc`, for `Vec<u8>` (unbounded).
pub trait Sink {
    /// Appends all of `bytes`, or returns [`Full`]. On `Full` the sink may hold
    /// a prefix of `bytes`; callers that need all-or-nothing mark and roll back
    /// (as the transmit buffer does).
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full>;
}

impl<B: Buf<u8>> Sink for B {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.try_extend(bytes)
    }
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// Bytes received and not yet consumed, with room to read more straight into.
///
/// Data lives in `storage[head..tail]`.
#[derive(Debug)]
pub(crate) struct RxBuf<B> {
    storage: B,
    head: usize,
    tail: usize,
}

impl<B: Buf<u8>> RxBuf<B> {
    pub(crate) fn new(storage: B) -> Self {
        Self { storage, head: 0, tail: 0 }
    }

    /// The most bytes this buffer will ever hold.
    pub(crate) fn limit(&self) -> usize {
        self.storage.limit()
    }

    /// The bytes of storage taken so far (what it costs in memory now).
    pub(crate) fn capacity(&self) -> usize {
        self.storage.as_slice().len()
    }

    /// Unconsumed bytes.
    pub(crate) fn data(&self) -> &[u8] {
        self.storage.as_slice().get(self.head..self.tail).unwrap_or(&[])
    }

    /// Unconsumed bytes, mutably (for in-place decoding such as HTTP's chunked framing).
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        let (head, tail) = (self.head, self.tail);
        self.storage.as_mut_slice().get_mut(head..tail).unwrap_or(&mut [])
    }

    /// Drops `n` bytes from the front now.
    pub(crate) fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.tail);
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Room to read into: moves live bytes to the front and grows the storage
    /// as needed. Empty only when the buffer holds `capacity()` unconsumed bytes.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.spare_for(1)
    }

    /// Like [`RxBuf::spare`], growing (within the limit) to offer at least
    /// `want` bytes where the storage can.
    pub(crate) fn spare_for(&mut self, want: usize) -> &mut [u8] {
        if self.storage.as_slice().len() - self.tail < want {
            if self.head > 0 {
                let (head, tail) = (self.head, self.tail);
                self.storage.as_mut_slice().copy_within(head..tail, 0);
                self.tail -= head;
                self.head = 0;
            }
            // Ask for a little more than we hold; storage rounds up as it likes.
            // A full fixed buffer (or one at its limit) just stays as it is.
            let want = self.tail.saturating_add(want).min(self.storage.limit());
            let _ = self.storage.grow_to(want);
        }
        let tail = self.tail;
        self.storage.as_mut_slice().get_mut(tail..).unwrap_or(&mut [])
    }

    /// Marks `n` bytes of [`RxBuf::spare`] as received. Returns `false` (and
    /// commits nothing) if `n` is more than `spare()` offered.
    pub(crate) fn commit(&mut self, n: usize) -> bool {
        if n > self.storage.as_slice().len() - self.tail {
            return false;
        }
        self.tail += n;
        true
    }

    /// Copies as much of `bytes` in as fits; returns how many were taken.
    pub(crate) fn fill(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare_for(bytes.len());
        let n = spare.len().min(bytes.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.tail += n;
        n
    }
}

/// Bytes queued for the peer: encoders append at the tail, the caller drains the head.
#[derive(Debug)]
pub(crate) struct TxBuf<B> {
    storage: B,
    head: usize,
}

impl<B: Buf<u8>> TxBuf<B> {
    pub(crate) fn new(storage: B) -> Self {
        Self { storage, head: 0 }
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        self.storage.as_slice().get(self.head..).unwrap_or(&[])
    }

    /// `n` bytes of [`TxBuf::pending`] were written.
    pub(crate) fn drained(&mut self, n: usize) {
        self.head = (self.head + n).min(self.storage.as_slice().len());
        if self.head == self.storage.as_slice().len() {
            self.storage.truncate(0);
            self.head = 0;
        }
    }

    /// Encodes one message with `encode`, all or nothing: if it does not fit,
    /// the buffer is left as it was and [`Full`] returned.
    pub(crate) fn encode<E>(&mut self, encode: impl FnOnce(&mut B) -> Result<(), E>) -> Result<(), E> {
        if self.head > 0 {
            // Reclaim the drained front before appending.
            let (head, len) = (self.head, self.storage.as_slice().len());
            self.storage.as_mut_slice().copy_within(head..len, 0);
            self.storage.truncate(len - head);
            self.head = 0;
        }
        let mark = self.storage.as_slice().len();
        let result = encode(&mut self.storage);
        if result.is_err() {
            self.storage.truncate(mark);
        }
        result
    }

    /// Drops everything not yet written.
    pub(crate) fn clear(&mut self) {
        self.storage.truncate(0);
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rx_never_grows_past_capacity() {
        let mut rx = RxBuf::new(heapless::Vec::<u8, 8>::new());
        assert_eq!(rx.fill(b"0123456789"), 8);
        assert!(rx.spare().is_empty());
        rx.consume(3);
        assert_eq!(rx.spare().len(), 3);
        assert_eq!(rx.data(), b"34567");
        assert!(!rx.commit(4));
        assert!(rx.commit(3));
        assert_eq!(rx.data().len(), 8);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn heap_rx_grows_to_its_limit_only() {
        let mut rx = RxBuf::new(Bounded::new(10_000));
        let mut total = 0;
        while !rx.spare().is_empty() {
            total += rx.fill(&[7; 3000]);
        }
        assert_eq!(total, 10_000);
    }

    #[test]
    fn tx_encode_is_all_or_nothing() {
        let mut tx = TxBuf::new(heapless::Vec::<u8, 8>::new());
        tx.encode(|b| b.put(b"abcd")).unwrap();
        assert_eq!(tx.encode(|b| b.put(b"efghi")), Err(Full { limit: 8 }));
        assert_eq!(tx.pending(), b"abcd");
        tx.drained(2);
        tx.encode(|b| b.put(b"efghij")).unwrap();
        assert_eq!(tx.pending(), b"cdefghij");
    }
}
