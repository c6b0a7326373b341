package data

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/brotli"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"
)

// Decoding the pages of a string column (the format:
// https://parquet.apache.org/docs/file-format/data-pages/). A page is a
// thrift PageHeader and a body of CompressedPageSize bytes. The column is
// top-level, so a row is one value and its definition level is 1 when the
// value is there, 0 when it is null.
//
//	data page v1   body compressed whole: [def levels: u32 length, RLE] [values]
//	data page v2   [def levels: RLE, DefinitionLevelsByteLength bytes] [values, compressed]
//	dictionary     body compressed: NumValues PLAIN values
//
// The encodings of the values are in parquetenc.go.

// maxPageSize bounds the sizes a page header may claim, so that a corrupt
// header cannot make the reader allocate without limit.
const maxPageSize = 1 << 30

// readPage reads a page header and its body from r; the page may take at
// most limit bytes.
func readPage(r *bufio.Reader, limit int64) (*format.PageHeader, []byte, error) {
	h := new(format.PageHeader)
	cr := &countingReader{r: r}
	if err := thrift.NewDecoder(new(thrift.CompactProtocol).NewReader(cr)).Decode(h); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, errors.New("truncated: the file ends inside a page header")
		}
		return nil, nil, fmt.Errorf("corrupt page header: %w", err)
	}
	size := int64(h.CompressedPageSize)
	switch {
	case size < 0 || h.UncompressedPageSize < 0 || h.UncompressedPageSize > maxPageSize:
		return nil, nil, fmt.Errorf("corrupt page header: sizes %d, %d", h.CompressedPageSize, h.UncompressedPageSize)
	case cr.n+size > limit:
		return nil, nil, fmt.Errorf("truncated or corrupt: a page of %d bytes where %d are left", size, limit-cr.n)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, nil, fmt.Errorf("truncated: %w", err)
	}
	if h.CRC != 0 && crc32.ChecksumIEEE(body) != uint32(h.CRC) {
		return nil, nil, errors.New("corrupt: the page's CRC does not match")
	}
	return h, body, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// dictionary decodes a dictionary page.
func (c *pqChunk) dictionary(h *format.PageHeader, body []byte) ([][]byte, error) {
	if !h.DictionaryPageHeader.Valid {
		return nil, errors.New("corrupt: a dictionary page without its header")
	}
	v := h.DictionaryPageHeader.V
	if v.Encoding != format.Plain && v.Encoding != format.PlainDictionary {
		return nil, fmt.Errorf("dictionary encoded %s, which torus does not read", v.Encoding)
	}
	data, err := c.decompress(body, int(h.UncompressedPageSize))
	if err != nil {
		return nil, err
	}
	return plainValues(data, int(v.NumValues))
}

// values decodes a data page of at most maxRows rows into one value per row:
// nil where it is null. dict returns the chunk's dictionary, for
// dictionary-encoded values.
func (c *pqChunk) values(h *format.PageHeader, body []byte, maxRows int64, dict func() ([][]byte, error)) ([][]byte, error) {
	var n int // values, nulls included: rows
	var enc format.Encoding
	var levels, data []byte
	switch {
	case h.Type == format.DataPage && h.DataPageHeader.Valid:
		v := h.DataPageHeader.V
		n, enc = int(v.NumValues), v.Encoding
		raw, err := c.decompress(body, int(h.UncompressedPageSize))
		if err != nil {
			return nil, err
		}
		if c.maxDef > 0 {
			if v.DefinitionLevelEncoding != format.RLE {
				return nil, fmt.Errorf("definition levels encoded %s, which torus does not read", v.DefinitionLevelEncoding)
			}
			if len(raw) < 4 || 4+int64(binary.LittleEndian.Uint32(raw)) > int64(len(raw)) {
				return nil, errors.New("corrupt: the definition levels run past the page")
			}
			l := 4 + int(binary.LittleEndian.Uint32(raw))
			levels, raw = raw[4:l], raw[l:]
		}
		data = raw
	case h.Type == format.DataPageV2 && h.DataPageHeaderV2.Valid:
		v := h.DataPageHeaderV2.V
		n, enc = int(v.NumValues), v.Encoding
		rl, dl := int(v.RepetitionLevelsByteLength), int(v.DefinitionLevelsByteLength)
		if rl < 0 || dl < 0 || rl+dl > len(body) {
			return nil, errors.New("corrupt: the levels run past the page")
		}
		levels, data = body[rl:rl+dl], body[rl+dl:]
		if !v.IsCompressed.Valid || v.IsCompressed.V {
			var err error
			if data, err = c.decompress(data, int(h.UncompressedPageSize)-rl-dl); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("corrupt: a %s page without its header", h.Type)
	}
	if n < 0 || int64(n) > maxRows {
		return nil, fmt.Errorf("corrupt: %d values in a page of at most %d rows", n, maxRows)
	}

	present := n // values that are not null
	var defs []uint32
	if c.maxDef > 0 {
		var err error
		if defs, err = rleHybrid(levels, 1, n); err != nil {
			return nil, fmt.Errorf("definition levels: %w", err)
		}
		present = 0
		for _, l := range defs {
			present += int(l)
		}
	}
	var vals [][]byte
	var err error
	switch enc {
	case format.Plain:
		vals, err = plainValues(data, present)
	case format.PlainDictionary, format.RLEDictionary:
		vals, err = dictValues(data, present, dict)
	case format.DeltaLengthByteArray:
		vals, err = deltaLengthValues(data, present)
	case format.DeltaByteArray:
		vals, err = deltaByteArrayValues(data, present)
	default:
		return nil, fmt.Errorf("values encoded %s, which torus does not read", enc)
	}
	if err != nil {
		return nil, err
	}
	if defs == nil {
		return vals, nil
	}
	rows := make([][]byte, n)
	for i, k := 0, 0; i < n; i++ {
		if defs[i] == 1 {
			rows[i], k = vals[k], k+1
		}
	}
	return rows, nil
}

// decompress decodes a page body of the chunk's codec, which must come to
// size bytes.
//
// Buffers are not sized from the header alone: a damaged size would make the
// reader allocate what it claims. They start at what the compressed bytes can
// plausibly hold and grow while the codec produces more.
func (c *pqChunk) decompress(b []byte, size int) ([]byte, error) {
	if size < 0 || size > maxPageSize {
		return nil, fmt.Errorf("corrupt: an uncompressed size of %d", size)
	}
	start := min(size, 16*len(b)+64<<10)
	var out []byte
	var err error
	switch c.codec {
	case format.Uncompressed:
		out = b
	case format.Snappy:
		if n, derr := snappy.DecodedLen(b); derr != nil || n != size {
			return nil, fmt.Errorf("corrupt SNAPPY data: %d bytes, the header says %d (%v)", n, size, derr)
		}
		out, err = snappy.Decode(make([]byte, size), b)
	case format.Gzip:
		var r *gzip.Reader
		if r, err = gzip.NewReader(bytes.NewReader(b)); err == nil {
			buf := bytes.NewBuffer(make([]byte, 0, start))
			_, err = buf.ReadFrom(io.LimitReader(r, int64(size)+1))
			out = buf.Bytes()
		}
	case format.Zstd:
		dec, derr := spillDecoder()
		if err = derr; err == nil {
			out, err = dec.DecodeAll(b, make([]byte, 0, start))
		}
	case format.Lz4Raw:
		if size > 255*len(b)+16 { // an LZ4 block expands at most about 255 times
			return nil, fmt.Errorf("corrupt LZ4_RAW data: %d bytes cannot hold %d", len(b), size)
		}
		out = make([]byte, size)
		var k int
		k, err = lz4.UncompressBlock(b, out)
		out = out[:k]
	case format.Brotli:
		out, err = new(brotli.Codec).Decode(make([]byte, 0, start), b)
	default:
		return nil, fmt.Errorf("compressed %s, which torus does not read", c.codec)
	}
	if err != nil {
		return nil, fmt.Errorf("corrupt %s data: %w", c.codec, err)
	}
	if len(out) != size {
		return nil, fmt.Errorf("corrupt %s data: %d bytes, the header says %d", c.codec, len(out), size)
	}
	return out, nil
}
