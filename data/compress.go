package data

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compressed JSON Lines. A jsonl or sft source whose file name ends in .gz or
// .zst (data.jsonl.gz, chat.jsonl.zst) is read through gzip or zstd; any
// other name is read as plain text.
//
// Documents are read one at a time in any order (shuffled, or from the
// middle after a resume), and neither format can start decoding in the middle
// of a stream: reading line 90 000 of a one-stream file would decode the
// 89 999 before it. So opening the source decompresses it once, checking every
// line as for a plain file, and writes the text again as independent zstd
// frames of about spillFrame bytes, each holding whole lines, into a temporary
// file: reading a document decodes one frame. The copy is about the size of
// the compressed source (zstd's fastest level), is made in os.TempDir()
// ($TMPDIR) and unlinked at once, so it takes no name and goes away with the
// process, or earlier, when the last document of the source is dropped (the
// *os.File closes itself when unreachable).

// spillFrame is the uncompressed size at which a frame of the copy is closed.
// Reading a document decodes its frame: a quarter of a megabyte takes a
// fraction of a millisecond.
const spillFrame = 256 << 10

// codecOf is the compression of the file at path, by its extension: "gzip",
// "zstd" or "" (none).
func codecOf(path string) string {
	switch filepath.Ext(path) {
	case ".gz":
		return "gzip"
	case ".zst", ".zstd":
		return "zstd"
	}
	return ""
}

// decompressor reads the file f of codec codec ("gzip" or "zstd").
func decompressor(codec string, f io.Reader) (io.ReadCloser, error) {
	if codec == "gzip" {
		return gzip.NewReader(f) // reads the header: a file that is not gzip fails here
	}
	d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

// corrupt describes an error of the codec's decoder met while reading a line.
func corrupt(codec string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated %s data: the file ends inside a compressed stream", codec)
	}
	if codec == "zstd" && errors.Is(err, zstd.ErrMagicMismatch) {
		return fmt.Errorf("not zstd data: %w", err)
	}
	return fmt.Errorf("corrupt %s data: %w", codec, err)
}

// spill is the re-compressed copy of a compressed source's text.
type spill struct {
	f      *os.File
	frames []spillFrameRef // in order of start
}

// spillFrameRef is one zstd frame of the copy.
type spillFrameRef struct {
	start int64 // offset in the uncompressed text of its first byte
	off   int64 // offset of the frame in the file
	size  int64 // compressed length
}

// spillWriter makes a spill from the lines given to it in order.
type spillWriter struct {
	s     *spill
	buf   []byte // lines not yet in a frame
	start int64  // text offset of buf[0]
	off   int64  // file offset of the next frame
}

var (
	spillEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	})
	spillDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0)) // DecodeAll: GOMAXPROCS calls at once
	})
)

func newSpill() (*spillWriter, error) {
	f, err := os.CreateTemp("", "torus-spill-*.zst")
	if err != nil {
		return nil, fmt.Errorf("decompressed copy: %w", err)
	}
	os.Remove(f.Name()) // open, the file lives on without its name
	return &spillWriter{s: &spill{f: f}}, nil
}

// add appends one raw line (with its newline, if it has one).
func (w *spillWriter) add(line []byte) error {
	if len(w.buf) > 0 && len(w.buf)+len(line) > spillFrame {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, line...)
	return nil
}

// flush writes the pending lines as one frame.
func (w *spillWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	enc, err := spillEncoder()
	if err != nil {
		return err
	}
	frame := enc.EncodeAll(w.buf, nil)
	if _, err := w.s.f.WriteAt(frame, w.off); err != nil {
		return fmt.Errorf("decompressed copy: %w", err)
	}
	w.s.frames = append(w.s.frames, spillFrameRef{start: w.start, off: w.off, size: int64(len(frame))})
	w.start += int64(len(w.buf))
	w.off += int64(len(frame))
	w.buf = w.buf[:0]
	return nil
}

// read returns the size bytes of text at offset off, which lie in one frame.
func (s *spill) read(off int64, size int) ([]byte, error) {
	i := sort.Search(len(s.frames), func(i int) bool { return s.frames[i].start > off }) - 1
	if i < 0 {
		return nil, fmt.Errorf("offset %d before the copy", off)
	}
	fr := s.frames[i]
	z := make([]byte, fr.size)
	if _, err := s.f.ReadAt(z, fr.off); err != nil {
		return nil, fmt.Errorf("decompressed copy: %w", err)
	}
	dec, err := spillDecoder()
	if err != nil {
		return nil, err
	}
	text, err := dec.DecodeAll(z, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressed copy: %w", err)
	}
	at := off - fr.start
	if at+int64(size) > int64(len(text)) {
		return nil, fmt.Errorf("decompressed copy: line at %d+%d past its frame (%d bytes)", off, size, len(text))
	}
	return append([]byte(nil), text[at:at+int64(size)]...), nil // not the whole frame kept alive by a document
}
