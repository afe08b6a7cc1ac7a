package deflate

// bitWriter packs bits least significant first (RFC 1951, 3.1.1) into out.
type bitWriter struct {
	out  []byte
	bits uint64
	n    uint // bits held, < 32 between calls
}

// put appends the low nb (at most 32) bits of v.
func (w *bitWriter) put(v uint64, nb uint) {
	w.bits |= v << w.n
	w.n += nb
	if w.n >= 32 {
		w.out = append(w.out, byte(w.bits), byte(w.bits>>8), byte(w.bits>>16), byte(w.bits>>24))
		w.bits >>= 32
		w.n -= 32
	}
}

// align writes out the held bits, padding the last byte with zeros.
func (w *bitWriter) align() {
	for w.n > 0 {
		w.out = append(w.out, byte(w.bits))
		w.bits >>= 8
		w.n = w.n - min(w.n, 8)
	}
	w.bits = 0
}
