package safetensors

// Writing: the header in the caller's order, 8-byte aligned, then the tensors,
// converted a chunk at a time when asked.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	st "github.com/nlpodyssey/safetensors"
)

// Write writes tensors (in the order of names) with optional metadata; dtype
// conversion: "" keeps each tensor's dtype, or "float32"|"bfloat16"|"float16"|"float64"
// converts (float tensors only). The file is written to path+".tmp", fsynced, and renamed.
func Write(path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) error {
	write, err := writer(path, names, ts, meta, dtype)
	if err != nil {
		return err
	}
	return WriteAtomic(path, write)
}

// WriteTo is Write into w, which the caller makes durable; path only names the
// file in errors.
func WriteTo(w io.Writer, path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) error {
	write, err := writer(path, names, ts, meta, dtype)
	if err != nil {
		return err
	}
	if err := write(w); err != nil {
		return fmt.Errorf("model: %s: %w", path, err)
	}
	return nil
}

// writer checks the tensors and builds the header, and returns what writes the file.
func writer(path string, names []string, ts map[string]*tensors.Tensor, meta map[string]string, dtype string) (func(io.Writer) error, error) {
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
		if conv, ok = FloatDType(dtype); !ok {
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
			if !IsFloat(t.DType()) {
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

// WriteAtomic writes path+".tmp" through a buffer, fsyncs it, renames it over path
// and fsyncs the directory; the tmp file is removed on any failure.
func WriteAtomic(path string, write func(io.Writer) error) (err error) {
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
