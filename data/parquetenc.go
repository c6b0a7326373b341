package data

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The encodings of a string column's values in a Parquet page
// (https://parquet.apache.org/docs/file-format/data-pages/encodings/):
//
//	PLAIN                     each value a u32 length and its bytes
//	PLAIN_DICTIONARY,         a bit width byte, then indices into the
//	RLE_DICTIONARY            dictionary page's PLAIN values, RLE (rleHybrid)
//	DELTA_LENGTH_BYTE_ARRAY   the lengths DELTA_BINARY_PACKED, then the bytes
//	DELTA_BYTE_ARRAY          the lengths of the prefixes shared with the
//	                          value before, DELTA_BINARY_PACKED, then the
//	                          suffixes as DELTA_LENGTH_BYTE_ARRAY
//
// Values are slices of the page's memory. Every length is checked against
// what is left, so that a corrupt page is an error and never a panic or an
// allocation it claims.

// plainValues splits n PLAIN byte arrays.
func plainValues(data []byte, n int) ([][]byte, error) {
	if n < 0 || n > len(data)/4 {
		return nil, fmt.Errorf("corrupt: %d values in %d bytes", n, len(data))
	}
	vals := make([][]byte, n)
	for i := range vals {
		if len(data) < 4 {
			return nil, fmt.Errorf("corrupt: value %d of %d runs past the page", i, n)
		}
		l := int64(binary.LittleEndian.Uint32(data))
		if 4+l > int64(len(data)) {
			return nil, fmt.Errorf("corrupt: value %d of %d runs past the page", i, n)
		}
		vals[i], data = data[4:4+l:4+l], data[4+l:]
	}
	return vals, nil
}

// dictValues looks up n dictionary-encoded values.
func dictValues(data []byte, n int, dict func() ([][]byte, error)) ([][]byte, error) {
	if n == 0 {
		return nil, nil
	}
	d, err := dict()
	if err != nil {
		return nil, err
	}
	if len(data) < 1 {
		return nil, errors.New("corrupt: no dictionary indices")
	}
	idx, err := rleHybrid(data[1:], int(data[0]), n)
	if err != nil {
		return nil, fmt.Errorf("dictionary indices: %w", err)
	}
	vals := make([][]byte, n)
	for i, k := range idx {
		if int(k) >= len(d) {
			return nil, fmt.Errorf("corrupt: dictionary index %d of a dictionary of %d", k, len(d))
		}
		vals[i] = d[k]
	}
	return vals, nil
}

// rleHybrid decodes n values of width bits from Parquet's RLE / bit-packing
// hybrid: runs, each a varint header h and then, for h even, one value
// (in ceil(width/8) bytes, little-endian) repeated h/2 times, or, for h odd,
// h/2 groups of 8 values bit-packed, least significant bit first.
func rleHybrid(b []byte, width, n int) ([]uint32, error) {
	if width > 32 {
		return nil, fmt.Errorf("corrupt: a bit width of %d", width)
	}
	out := make([]uint32, 0, min(n, 1<<16)) // n is checked against the page's rows, not its bytes
	for len(out) < n {
		h, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, fmt.Errorf("corrupt: %d of %d values, then no run", len(out), n)
		}
		b = b[k:]
		if h&1 == 0 {
			w := (width + 7) / 8
			if len(b) < w {
				return nil, errors.New("corrupt: a run without its value")
			}
			var v uint32
			for i := range w {
				v |= uint32(b[i]) << (8 * i)
			}
			b = b[w:]
			for c := h >> 1; c > 0 && len(out) < n; c-- {
				out = append(out, v)
			}
			continue
		}
		size := min(int(min(h>>1, uint64(len(b))))*width, len(b)) // writers may cut the last group short
		packed := b[:size]
		b = b[size:]
		for bit := 0; bit+width <= 8*len(packed) && len(out) < n; bit += width {
			var v uint32
			for j := range width {
				if packed[(bit+j)/8]>>((bit+j)%8)&1 == 1 {
					v |= 1 << j
				}
			}
			out = append(out, v)
		}
		if width == 0 {
			for c := (h >> 1) * 8; c > 0 && len(out) < n; c-- {
				out = append(out, 0)
			}
		}
	}
	return out, nil
}

// deltaLengthValues decodes n DELTA_LENGTH_BYTE_ARRAY values.
func deltaLengthValues(data []byte, n int) ([][]byte, error) {
	lens, p, err := deltaBinaryPacked(data, n)
	if err != nil {
		return nil, fmt.Errorf("lengths: %w", err)
	}
	if len(lens) != n {
		return nil, fmt.Errorf("corrupt: %d lengths for %d values", len(lens), n)
	}
	data = data[p:]
	vals := make([][]byte, n)
	for i, l := range lens {
		if l < 0 || l > int64(len(data)) {
			return nil, fmt.Errorf("corrupt: value %d of %d runs past the page", i, n)
		}
		vals[i], data = data[:l:l], data[l:]
	}
	return vals, nil
}

// deltaByteArrayValues decodes n DELTA_BYTE_ARRAY values.
func deltaByteArrayValues(data []byte, n int) ([][]byte, error) {
	prefixes, p, err := deltaBinaryPacked(data, n)
	if err != nil {
		return nil, fmt.Errorf("prefix lengths: %w", err)
	}
	if len(prefixes) != n {
		return nil, fmt.Errorf("corrupt: %d prefix lengths for %d values", len(prefixes), n)
	}
	suffixes, err := deltaLengthValues(data[p:], n)
	if err != nil {
		return nil, err
	}
	vals := make([][]byte, n)
	var prev []byte
	for i, pre := range prefixes {
		if pre < 0 || pre > int64(len(prev)) {
			return nil, fmt.Errorf("corrupt: value %d shares %d bytes with a value of %d", i, pre, len(prev))
		}
		v := make([]byte, 0, int(pre)+len(suffixes[i]))
		v = append(append(v, prev[:pre]...), suffixes[i]...)
		vals[i], prev = v, v
	}
	return vals, nil
}

// deltaBinaryPacked decodes DELTA_BINARY_PACKED integers, at most max of
// them, and returns them and the bytes they took. The header is the block
// size in values, the miniblocks per block, the count and the first value;
// each block is its smallest delta, a bit width per miniblock and the
// miniblocks, each delta minus the smallest bit-packed (least significant bit
// first). Miniblocks past the last value are not written.
func deltaBinaryPacked(b []byte, max int) ([]int64, int, error) {
	p := 0
	uvarint := func() uint64 {
		v, k := binary.Uvarint(b[p:])
		if k <= 0 {
			p = -1
			return 0
		}
		p += k
		return v
	}
	blockSize, miniblocks, total := uvarint(), uvarint(), uvarint()
	if p < 0 {
		return nil, 0, errors.New("corrupt: a truncated header")
	}
	first, k := binary.Varint(b[p:])
	if k <= 0 {
		return nil, 0, errors.New("corrupt: a truncated header")
	}
	p += k
	switch {
	case total > uint64(max):
		return nil, 0, fmt.Errorf("corrupt: %d values where %d are expected", total, max)
	case miniblocks == 0 || blockSize == 0 || blockSize%miniblocks != 0 || blockSize > 1<<20:
		return nil, 0, fmt.Errorf("corrupt: blocks of %d values in %d miniblocks", blockSize, miniblocks)
	}
	per := int(blockSize / miniblocks) // values per miniblock
	out := make([]int64, 0, total)
	if total > 0 {
		out = append(out, first)
	}
	last := first
	for uint64(len(out)) < total {
		minDelta, k := binary.Varint(b[p:])
		if k <= 0 || p+k+int(miniblocks) > len(b) {
			return nil, 0, errors.New("corrupt: a truncated block")
		}
		p += k
		widths := b[p : p+int(miniblocks)]
		p += int(miniblocks)
		for _, w := range widths {
			if uint64(len(out)) == total {
				break
			}
			if w > 64 {
				return nil, 0, fmt.Errorf("corrupt: a bit width of %d", w)
			}
			size := per * int(w) / 8
			if p+size > len(b) {
				return nil, 0, errors.New("corrupt: a truncated miniblock")
			}
			mb := b[p : p+size]
			for j := 0; j < per && uint64(len(out)) < total; j++ {
				var v uint64
				for bit := range int(w) {
					at := j*int(w) + bit
					v |= uint64(mb[at/8]>>(at%8)&1) << bit
				}
				last += minDelta + int64(v) // wraps around, as the format says
				out = append(out, last)
			}
			p += size
		}
	}
	return out, p, nil
}
