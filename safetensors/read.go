package safetensors

// Reading. Layout of a file: 8 bytes little-endian header length N, N
// bytes of JSON header ({name: {dtype, shape, data_offsets}, "__metadata__": {..}}),
// then the data section, which the tensors must tile exactly (no holes, no overlap).
//
// The JSON header is parsed by github.com/nlpodyssey/safetensors (Metadata's
// UnmarshalJSON, which also parses dtypes and rejects negative or fractional numbers).
// Its own validator and reader need the whole file as one []byte, and its writer
// orders tensors by dtype then name, so the layout checks, the reads through
// io.ReaderAt and the writer in the caller's order are ours.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	st "github.com/nlpodyssey/safetensors"
)

const (
	maxHeaderRead  = 100 << 20   // largest header we read
	maxHeaderWrite = 100_000_000 // largest header the reference (Python/Rust) reader accepts
	chunkBytes     = 1 << 20     // read/convert/write granularity
)

// Read reads every tensor of a .safetensors file as host tensors (float32/float64
// kept, bfloat16/float16 converted to float32, integer and bool dtypes kept) plus
// the __metadata__ map. See ReadRaw to keep half floats.
func Read(path string) (map[string]*tensors.Tensor, map[string]string, error) {
	return readPath(path, true)
}

// ReadRaw is Read keeping every tensor in its stored dtype.
func ReadRaw(path string) (map[string]*tensors.Tensor, map[string]string, error) {
	return readPath(path, false)
}

// ReadFrom is Read over size bytes of r (a buffer, a section of a larger file);
// name labels the errors.
func ReadFrom(name string, r io.ReaderAt, size int64) (map[string]*tensors.Tensor, map[string]string, error) {
	s, err := parse(name, r, size)
	if err != nil {
		return nil, nil, err
	}
	return s.readAll(true)
}

func readPath(path string, halfToF32 bool) (map[string]*tensors.Tensor, map[string]string, error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return f.readAll(halfToF32)
}

func (s *File) readAll(halfToF32 bool) (map[string]*tensors.Tensor, map[string]string, error) {
	out := make(map[string]*tensors.Tensor, len(s.entries))
	for _, e := range s.entries {
		to := e.DType
		if halfToF32 && (to == dtypes.BFloat16 || to == dtypes.Float16) {
			to = dtypes.Float32
		}
		t, err := s.Read(e, to)
		if err != nil {
			return nil, nil, err
		}
		out[e.Name] = t
	}
	return out, s.meta, nil
}

// Entry is one tensor of a validated file; begin and end are relative to the data section.
type Entry struct {
	Name       string
	DType      dtypes.DType
	Shape      []int
	begin, end int64
}

// File is a safetensors file whose header has been validated against its size;
// tensors are read one at a time with Read. A File is not safe for concurrent use.
type File struct {
	path      string
	r         io.ReaderAt
	closer    io.Closer // nil when the caller owns r
	dataStart int64
	entries   []Entry // by data offset
	meta      map[string]string
}

// Open opens path and validates its header; no tensor data is read.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("model: %w", err)
	}
	s, err := parse(path, f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	s.closer = f
	return s, nil
}

// Path is the file's path as given to Open (or the name given to ReadFrom).
func (s *File) Path() string { return s.path }

// Entries are the file's tensors in data order; the slice is the File's own, not to be changed.
func (s *File) Entries() []Entry { return s.entries }

// Metadata is the header's __metadata__ map (empty, not nil, without one).
func (s *File) Metadata() map[string]string { return s.meta }

// Close closes the file opened by Open.
func (s *File) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// parse reads and validates the header of the size bytes of r.
func parse(path string, r io.ReaderAt, size int64) (*File, error) {
	if !littleEndianHost {
		return nil, fmt.Errorf("model: %s: safetensors IO needs a little-endian host", path)
	}
	if size < 8 {
		return nil, fmt.Errorf("model: %s: file is %d bytes, shorter than the 8-byte header length", path, size)
	}
	var lenBuf [8]byte
	if err := readFullAt(r, lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("model: %s: read header length: %w", path, err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > maxHeaderRead {
		return nil, fmt.Errorf("model: %s: header length %d is over the %d-byte limit", path, n, maxHeaderRead)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("model: %s: header length %d is beyond the file (%d bytes)", path, n, size)
	}
	hdr := make([]byte, n)
	if err := readFullAt(r, hdr, 8); err != nil {
		return nil, fmt.Errorf("model: %s: read header: %w", path, err)
	}
	if !json.Valid(hdr) {
		return nil, fmt.Errorf("model: %s: header is not JSON", path)
	}
	var md st.Metadata
	if err := json.Unmarshal(hdr, &md); err != nil {
		return nil, fmt.Errorf("model: %s: header: %w", path, err)
	}
	s := &File{path: path, r: r, dataStart: 8 + int64(n), meta: md.Metadata()}
	if s.meta == nil {
		s.meta = map[string]string{}
	}
	var err error
	if s.entries, err = validateLayout(path, md, size-s.dataStart); err != nil {
		return nil, err
	}
	return s, nil
}

// validateLayout checks every tensor's shape against its byte range and that the
// ranges tile the data section [0, dataLen) exactly.
func validateLayout(path string, md st.Metadata, dataLen int64) ([]Entry, error) {
	infos := md.Tensors()
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	sort.Strings(names) // the first problem reported does not depend on map order
	entries := make([]Entry, 0, len(infos))
	for _, name := range names {
		info := infos[name]
		dt, ok := fromSTDType(info.DType)
		if !ok {
			return nil, fmt.Errorf("model: %s: tensor %q: dtype %s not supported", path, name, info.DType)
		}
		shape := make([]int, len(info.Shape))
		count := uint64(1)
		for i, d := range info.Shape {
			hi, lo := bits.Mul64(count, d)
			if hi != 0 || d > math.MaxInt || lo > math.MaxInt {
				return nil, fmt.Errorf("model: %s: tensor %q: shape %v overflows", path, name, info.Shape)
			}
			count, shape[i] = lo, int(d)
		}
		hi, want := bits.Mul64(count, uint64(dt.Size()))
		b, e := info.DataOffsets[0], info.DataOffsets[1]
		switch {
		case e < b:
			return nil, fmt.Errorf("model: %s: tensor %q: data_offsets [%d, %d] out of order", path, name, b, e)
		case e > uint64(dataLen):
			return nil, fmt.Errorf("model: %s: tensor %q: data_offsets [%d, %d] go beyond the data section (%d bytes)",
				path, name, b, e, dataLen)
		case hi != 0 || e-b != want:
			return nil, fmt.Errorf("model: %s: tensor %q: shape %v of %s needs %d elements * %d bytes, data_offsets [%d, %d] hold %d bytes",
				path, name, info.Shape, info.DType, count, dt.Size(), b, e, e-b)
		}
		entries = append(entries, Entry{Name: name, DType: dt, Shape: shape, begin: int64(b), end: int64(e)})
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.Name < b.Name
	})
	at, prev := int64(0), "the start of the data section"
	for _, e := range entries {
		switch {
		case e.begin < at:
			return nil, fmt.Errorf("model: %s: tensor %q: data_offsets [%d, %d] overlap %s (ends at %d)",
				path, e.Name, e.begin, e.end, prev, at)
		case e.begin > at:
			return nil, fmt.Errorf("model: %s: hole of %d bytes at offset %d of the data section, before tensor %q",
				path, e.begin-at, at, e.Name)
		}
		at, prev = e.end, fmt.Sprintf("tensor %q", e.Name)
	}
	if at != dataLen {
		return nil, fmt.Errorf("model: %s: data section is %d bytes but the tensors cover %d", path, dataLen, at)
	}
	return entries, nil
}

// Read loads one tensor (an entry of s) as dtype `to`: its stored dtype, or any
// float dtype when stored as a float.
func (s *File) Read(e Entry, to dtypes.DType) (*tensors.Tensor, error) {
	if to != e.DType && !(IsFloat(e.DType) && IsFloat(to)) {
		return nil, fmt.Errorf("model: %s: tensor %q: cannot convert %s to %s", s.path, e.Name, e.DType, to)
	}
	t := tensors.FromShape(shapes.Make(to, e.Shape...)) // bounded: validateLayout tied the shape to bytes on disk
	sr := io.NewSectionReader(s.r, s.dataStart+e.begin, e.end-e.begin)
	var err, rerr error
	switch {
	case to == e.DType && to == dtypes.Bool: // any nonzero byte is true
		err = t.MutableFlatData(func(flat any) {
			b, _ := flat.([]bool)
			buf := make([]byte, len(b))
			if _, rerr = io.ReadFull(sr, buf); rerr == nil {
				for i, x := range buf {
					b[i] = x != 0
				}
			}
		})
	case to == e.DType: // little-endian host: the stored bytes are the values
		err = t.MutableBytes(func(data []byte) { _, rerr = io.ReadFull(sr, data) })
	default:
		err = t.MutableBytes(func(data []byte) { rerr = convertStream(sr, e.DType, data, to) })
	}
	if err = errors.Join(err, rerr); err != nil {
		return nil, fmt.Errorf("model: %s: tensor %q: %w", s.path, e.Name, err)
	}
	return t, nil
}
