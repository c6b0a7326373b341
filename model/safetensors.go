package model

// Safetensors file IO. Layout of a file: 8 bytes little-endian header length N, N
// bytes of JSON header ({name: {dtype, shape, data_offsets}, "__metadata__": {..}}),
// then the data section, which the tensors must tile exactly (no holes, no overlap).
//
// The JSON header is parsed by github.com/nlpodyssey/safetensors (Metadata's
// UnmarshalJSON, which also parses dtypes and rejects negative or fractional numbers).
// Its own validator and reader need the whole file as one []byte, and its writer
// orders tensors by dtype then name, so the layout checks, the reads through
// io.ReaderAt and the writer in the caller's order are ours.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"

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

// ReadSafetensors reads every tensor of a .safetensors file as host tensors
// (float32/float64 kept, bfloat16/float16 converted to float32, integer and bool
// dtypes kept) plus the __metadata__ map. See ReadSafetensorsRaw to keep half floats.
func ReadSafetensors(path string) (map[string]*tensors.Tensor, map[string]string, error) {
	return readSafetensors(path, true)
}

// ReadSafetensorsRaw is ReadSafetensors keeping every tensor in its stored dtype.
func ReadSafetensorsRaw(path string) (map[string]*tensors.Tensor, map[string]string, error) {
	return readSafetensors(path, false)
}

// ReadSafetensorsFrom is ReadSafetensors over size bytes of r (a buffer, a section of
// a larger file); name labels the errors.
func ReadSafetensorsFrom(name string, r io.ReaderAt, size int64) (map[string]*tensors.Tensor, map[string]string, error) {
	s, err := parseSafetensors(name, r, size)
	if err != nil {
		return nil, nil, err
	}
	return s.readAll(true)
}

func readSafetensors(path string, halfToF32 bool) (map[string]*tensors.Tensor, map[string]string, error) {
	f, err := openSafetensors(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return f.readAll(halfToF32)
}

func (s *stFile) readAll(halfToF32 bool) (map[string]*tensors.Tensor, map[string]string, error) {
	out := make(map[string]*tensors.Tensor, len(s.entries))
	for _, e := range s.entries {
		to := e.dtype
		if halfToF32 && (to == dtypes.BFloat16 || to == dtypes.Float16) {
			to = dtypes.Float32
		}
		t, err := s.read(e, to)
		if err != nil {
			return nil, nil, err
		}
		out[e.name] = t
	}
	return out, s.meta, nil
}

// stEntry is one tensor of a validated file; begin and end are relative to the data section.
type stEntry struct {
	name       string
	dtype      dtypes.DType
	shape      []int
	begin, end int64
}

// stFile is a safetensors file whose header has been validated against its size.
type stFile struct {
	path      string
	r         io.ReaderAt
	closer    io.Closer // nil when the caller owns r
	dataStart int64
	entries   []stEntry // by data offset
	meta      map[string]string
}

func (s *stFile) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// openSafetensors opens path and validates its header; no tensor data is read.
func openSafetensors(path string) (*stFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("model: %w", err)
	}
	s, err := parseSafetensors(path, f, fi.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	s.closer = f
	return s, nil
}

// parseSafetensors reads and validates the header of the size bytes of r.
func parseSafetensors(path string, r io.ReaderAt, size int64) (*stFile, error) {
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
	s := &stFile{path: path, r: r, dataStart: 8 + int64(n), meta: md.Metadata()}
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
func validateLayout(path string, md st.Metadata, dataLen int64) ([]stEntry, error) {
	infos := md.Tensors()
	names := make([]string, 0, len(infos))
	for name := range infos {
		names = append(names, name)
	}
	sort.Strings(names) // the first problem reported does not depend on map order
	entries := make([]stEntry, 0, len(infos))
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
		entries = append(entries, stEntry{name: name, dtype: dt, shape: shape, begin: int64(b), end: int64(e)})
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.begin != b.begin {
			return a.begin < b.begin
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.name < b.name
	})
	at, prev := int64(0), "the start of the data section"
	for _, e := range entries {
		switch {
		case e.begin < at:
			return nil, fmt.Errorf("model: %s: tensor %q: data_offsets [%d, %d] overlap %s (ends at %d)",
				path, e.name, e.begin, e.end, prev, at)
		case e.begin > at:
			return nil, fmt.Errorf("model: %s: hole of %d bytes at offset %d of the data section, before tensor %q",
				path, e.begin-at, at, e.name)
		}
		at, prev = e.end, fmt.Sprintf("tensor %q", e.name)
	}
	if at != dataLen {
		return nil, fmt.Errorf("model: %s: data section is %d bytes but the tensors cover %d", path, dataLen, at)
	}
	return entries, nil
}

// read loads one tensor as dtype `to`: its stored dtype, or any float dtype when stored as a float.
func (s *stFile) read(e stEntry, to dtypes.DType) (*tensors.Tensor, error) {
	if to != e.dtype && !(isFloat(e.dtype) && isFloat(to)) {
		return nil, fmt.Errorf("model: %s: tensor %q: cannot convert %s to %s", s.path, e.name, e.dtype, to)
	}
	t := tensors.FromShape(shapes.Make(to, e.shape...)) // bounded: validateLayout tied the shape to bytes on disk
	sr := io.NewSectionReader(s.r, s.dataStart+e.begin, e.end-e.begin)
	var err, rerr error
	switch {
	case to == e.dtype && to == dtypes.Bool: // any nonzero byte is true
		err = t.MutableFlatData(func(flat any) {
			b, _ := flat.([]bool)
			buf := make([]byte, len(b))
			if _, rerr = io.ReadFull(sr, buf); rerr == nil {
				for i, x := range buf {
					b[i] = x != 0
				}
			}
		})
	case to == e.dtype: // little-endian host: the stored bytes are the values
		err = t.MutableBytes(func(data []byte) { _, rerr = io.ReadFull(sr, data) })
	default:
		err = t.MutableBytes(func(data []byte) { rerr = convertStream(sr, e.dtype, data, to) })
	}
	if err = errors.Join(err, rerr); err != nil {
		return nil, fmt.Errorf("model: %s: tensor %q: %w", s.path, e.name, err)
	}
	return t, nil
}

// WriteSafetensors writes tensors (in the order of names) with optional metadata;
// dtype conversion: "" keeps each tensor's dtype, or "float32"|"bfloat16"|"float16"|"float64"
// converts (float tensors only). The file is written to path+".tmp", fsynced, and renamed.
func WriteSafetensors(path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) error {
	write, err := safetensorsWriter(path, names, ts, meta, dtype)
	if err != nil {
		return err
	}
	return writeAtomic(path, write)
}

// WriteSafetensorsTo is WriteSafetensors into w, which the caller makes durable;
// path only names the file in errors.
func WriteSafetensorsTo(w io.Writer, path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) error {
	write, err := safetensorsWriter(path, names, ts, meta, dtype)
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	return nil
}

// safetensorsWriter checks the tensors and builds the header, and returns what
// writes the file.
func safetensorsWriter(path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) (func(io.Writer) error, error) {
	if !littleEndianHost {
		return nil, fmt.Errorf("model: %s: safetensors IO needs a little-endian host", path)
	}
	for k, v := range meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("model: %s: metadata %q: %q is not UTF-8", path, k, v)
		}
	}
	var conv dtypes.DType
	if dtype != "" {
		var ok bool
		if conv, ok = floatDTypeByName[dtype]; !ok {
			return nil, fmt.Errorf("model: %s: dtype %q not supported (float32, bfloat16, float16, float64 or \"\")", path, dtype)
		}
	}
	// Header: keys in the caller's order, offsets tiling the data section.
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if len(meta) > 0 {
		m, err := json.Marshal(meta)
		if err != nil {
			return nil, fmt.Errorf("model: %s: metadata: %w", path, err)
		}
		hdr.WriteString(`"__metadata__":`)
		hdr.Write(m)
	}
	seen := make(map[string]bool, len(names))
	outDT := make([]dtypes.DType, len(names))
	offset := uint64(0)
	for i, name := range names {
		t := ts[name]
		switch {
		case t == nil:
			return nil, fmt.Errorf("model: %s: no tensor %q", path, name)
		case seen[name]:
			return nil, fmt.Errorf("model: %s: tensor %q named twice", path, name)
		case !utf8.ValidString(name):
			return nil, fmt.Errorf("model: %s: tensor name %q is not UTF-8", path, name)
		case name == "__metadata__":
			return nil, fmt.Errorf("model: %s: a tensor cannot be named __metadata__", path)
		}
		seen[name] = true
		outDT[i] = t.DType()
		if conv != dtypes.InvalidDType {
			if !isFloat(t.DType()) {
				return nil, fmt.Errorf("model: %s: tensor %q is %s, cannot convert to %s", path, name, t.DType(), dtype)
			}
			outDT[i] = conv
		}
		sdt, ok := toSTDType(outDT[i])
		if !ok {
			return nil, fmt.Errorf("model: %s: tensor %q: dtype %s has no safetensors equivalent", path, name, outDT[i])
		}
		info := st.TensorInfo{DType: sdt, Shape: []uint64{}}
		for _, d := range t.Shape().Dimensions {
			info.Shape = append(info.Shape, uint64(d))
		}
		n := uint64(t.Size()) * uint64(outDT[i].Size())
		info.DataOffsets = [2]uint64{offset, offset + n}
		offset += n
		k, _ := json.Marshal(name)
		v, err := json.Marshal(&info)
		if err != nil {
			return nil, fmt.Errorf("model: %s: tensor %q: %w", path, name, err)
		}
		if hdr.Len() > 1 {
			hdr.WriteByte(',')
		}
		hdr.Write(k)
		hdr.WriteByte(':')
		hdr.Write(v)
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 { // the data section starts 8-byte aligned, as the reference writer does
		hdr.WriteByte(' ')
	}
	if hdr.Len() > maxHeaderWrite {
		return nil, fmt.Errorf("model: %s: header of %d bytes is over the %d-byte limit of safetensors readers", path, hdr.Len(), maxHeaderWrite)
	}
	return func(w io.Writer) error {
		var lenBuf [8]byte
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(hdr.Len()))
		if _, err := w.Write(lenBuf[:]); err != nil {
			return err
		}
		if _, err := w.Write(hdr.Bytes()); err != nil {
			return err
		}
		for i, name := range names {
			if err := writeTensor(w, ts[name], outDT[i]); err != nil {
				return fmt.Errorf("tensor %q: %w", name, err)
			}
		}
		return nil
	}, nil
}

func writeTensor(w io.Writer, t *tensors.Tensor, to dtypes.DType) error {
	var werr error
	err := t.ConstFlatData(func(flat any) {
		if b, ok := flat.([]bool); ok { // one byte 0/1 per value, whatever Go stores
			buf := make([]byte, len(b))
			for i, v := range b {
				if v {
					buf[i] = 1
				}
			}
			_, werr = w.Write(buf)
			return
		}
		src := dtypes.UnsafeByteSliceFromAny(flat)
		if to == t.DType() {
			_, werr = w.Write(src)
			return
		}
		werr = convertChunks(src, t.DType(), to, func(out []byte) error { _, err := w.Write(out); return err })
	})
	if err != nil {
		return err
	}
	return werr
}

// writeAtomic writes path+".tmp" through a buffer, fsyncs it, renames it over path
// and fsyncs the directory; the tmp file is removed on any failure.
func writeAtomic(path string, write func(io.Writer) error) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, chunkBytes)
	if err = write(bw); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("model: %s: fsync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil { // make the rename durable; best effort
		d.Sync()
		d.Close()
	}
	return nil
}

var floatDTypeByName = map[string]dtypes.DType{
	"float32": dtypes.Float32, "bfloat16": dtypes.BFloat16, "float16": dtypes.Float16, "float64": dtypes.Float64,
}

var stDTypes = []struct {
	s st.DType
	d dtypes.DType
}{
	{st.BOOL, dtypes.Bool}, {st.U8, dtypes.Uint8}, {st.I8, dtypes.Int8}, {st.I16, dtypes.Int16},
	{st.U16, dtypes.Uint16}, {st.F16, dtypes.Float16}, {st.BF16, dtypes.BFloat16}, {st.I32, dtypes.Int32},
	{st.U32, dtypes.Uint32}, {st.F32, dtypes.Float32}, {st.F64, dtypes.Float64}, {st.I64, dtypes.Int64},
	{st.U64, dtypes.Uint64},
}
