package runlog

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// This file reads event files back from the formats' specifications alone,
// sharing no code with the writer (which uses protowire):
//
//   - TFRecord (tensorflow/core/lib/io/record_writer.cc): uint64 length, uint32
//     masked CRC-32C of those 8 bytes, the data, uint32 masked CRC-32C of the
//     data; all little-endian. mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
//   - Event (tensorflow/core/util/event.proto): 1 wall_time double, 2 step
//     int64, 3 file_version string, 5 summary Summary.
//   - Summary (tensorflow/core/framework/summary.proto): 1 value repeated
//     Value; Value: 1 tag string, 2 simple_value float.

type tbEvent struct {
	wall    float64
	step    int64
	version string
	scalars map[string]float32
}

func le(b []byte) (v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func unmask(m uint32) uint32 {
	r := m - 0xa282ead8
	return r<<15 | r>>17
}

// readTFRecords splits a TFRecord file, checking both checksums of each record.
func readTFRecords(b []byte) ([][]byte, error) {
	tab := crc32.MakeTable(0x82f63b78) // Castagnoli, reversed
	var recs [][]byte
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return nil, fmt.Errorf("offset %d: %d bytes left, too few for a record header", off, len(b)-off)
		}
		n := le(b[off : off+8])
		if got, want := crc32.Checksum(b[off:off+8], tab), unmask(uint32(le(b[off+8:off+12]))); got != want {
			return nil, fmt.Errorf("offset %d: length CRC %08x, header says %08x", off, got, want)
		}
		if n > uint64(len(b)-off-16) {
			return nil, fmt.Errorf("offset %d: a record of %d bytes does not fit", off, n)
		}
		data := b[off+12 : off+12+int(n)]
		if got, want := crc32.Checksum(data, tab), unmask(uint32(le(b[off+12+int(n):off+16+int(n)]))); got != want {
			return nil, fmt.Errorf("offset %d: data CRC %08x, record says %08x", off, got, want)
		}
		recs = append(recs, data)
		off += 16 + int(n)
	}
	return recs, nil
}

// pbField is one protobuf field: its number, wire type and value (varint,
// fixed bits or bytes).
type pbField struct {
	num   int
	wire  int
	u     uint64
	bytes []byte
}

func uvarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errors.New("bad varint")
}

func parsePB(b []byte) ([]pbField, error) {
	var out []pbField
	for len(b) > 0 {
		key, n, err := uvarint(b)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		f := pbField{num: int(key >> 3), wire: int(key & 7)}
		switch f.wire {
		case 0:
			if f.u, n, err = uvarint(b); err != nil {
				return nil, err
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return nil, errors.New("short fixed64")
			}
			f.u, b = le(b[:8]), b[8:]
		case 5:
			if len(b) < 4 {
				return nil, errors.New("short fixed32")
			}
			f.u, b = le(b[:4]), b[4:]
		case 2:
			l, n, err := uvarint(b)
			if err != nil {
				return nil, err
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return nil, errors.New("length past the end")
			}
			f.bytes, b = b[:l], b[l:]
		default:
			return nil, fmt.Errorf("wire type %d", f.wire)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseEvent(b []byte) (tbEvent, error) {
	ev := tbEvent{scalars: map[string]float32{}}
	fs, err := parsePB(b)
	if err != nil {
		return ev, err
	}
	for _, f := range fs {
		switch {
		case f.num == 1 && f.wire == 1:
			ev.wall = math.Float64frombits(f.u)
		case f.num == 2 && f.wire == 0:
			ev.step = int64(f.u)
		case f.num == 3 && f.wire == 2:
			ev.version = string(f.bytes)
		case f.num == 5 && f.wire == 2:
			vals, err := parsePB(f.bytes)
			if err != nil {
				return ev, fmt.Errorf("summary: %w", err)
			}
			for _, v := range vals {
				if v.num != 1 || v.wire != 2 {
					return ev, fmt.Errorf("summary field %d/%d", v.num, v.wire)
				}
				vf, err := parsePB(v.bytes)
				if err != nil {
					return ev, fmt.Errorf("summary value: %w", err)
				}
				var tag string
				var val float32
				var has bool
				for _, x := range vf {
					switch {
					case x.num == 1 && x.wire == 2:
						tag = string(x.bytes)
					case x.num == 2 && x.wire == 5:
						val, has = math.Float32frombits(uint32(x.u)), true
					}
				}
				if tag == "" || !has {
					return ev, fmt.Errorf("summary value without a tag or simple_value: %x", v.bytes)
				}
				ev.scalars[tag] = val
			}
		default:
			return ev, fmt.Errorf("unexpected event field %d (wire %d)", f.num, f.wire)
		}
	}
	return ev, nil
}

func readEventFile(t *testing.T, path string) []tbEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readTFRecords(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var evs []tbEvent
	for i, r := range recs {
		ev, err := parseEvent(r)
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, i, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func TestTensorBoardEventsReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tensorboard")
	tb, err := OpenTensorBoard(dir)
	if err != nil {
		t.Fatal(err)
	}
	steps := []map[string]any{
		{"step": 1, "loss": 5.5, "lr": 1e-4, "grad_norm": 2.0, "tokens_per_s": 1000.0, "step_seconds": 1.0, "memory": map[string]any{"weights": 10}},
		{"step": 2, "loss": 5.25, "lr": 2e-4, "grad_norm": 1.5, "tokens_per_s": 1500.0, "checkpoint": "step-2"},
		{"step": 3, "loss": 5.0, "lr": 3e-4, "grad_norm": 1.0, "tokens_per_s": 2000.0, "eval_loss": 5.125},
	}
	for _, s := range steps {
		if err := tb.Observe(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) != 1 || files[0] != tb.Path() || !strings.Contains(filepath.Base(files[0]), "tfevents") {
		t.Fatalf("want one events.out.tfevents.* file, got %v (%v)", files, err)
	}
	// Every event file TensorBoard's own writers start holds the same first
	// record header: a 24-byte Event (wall_time, file_version "brain.Event:2").
	if b, err := os.ReadFile(files[0]); err != nil || !bytes.HasPrefix(b, []byte{0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0x7f, 0x4b, 0x22}) {
		t.Errorf("the file does not start as TensorBoard's event files do (%v)", err)
	}
	evs := readEventFile(t, files[0])
	if len(evs) != 1+len(steps) {
		t.Fatalf("%d events, want %d", len(evs), 1+len(steps))
	}
	if evs[0].version != "brain.Event:2" || evs[0].wall < 1e9 {
		t.Errorf("first event %+v, want file_version brain.Event:2 and a wall time", evs[0])
	}
	tests := []struct {
		step int64
		want map[string]float32
	}{
		{1, map[string]float32{"loss": 5.5, "lr": 1e-4, "grad_norm": 2, "tokens_per_s": 1000}},
		{2, map[string]float32{"loss": 5.25, "lr": 2e-4, "grad_norm": 1.5, "tokens_per_s": 1500}},
		{3, map[string]float32{"loss": 5, "lr": 3e-4, "grad_norm": 1, "tokens_per_s": 2000, "eval_loss": 5.125}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint("step ", tt.step), func(t *testing.T) {
			ev := evs[i+1]
			if ev.step != tt.step || ev.wall < evs[0].wall {
				t.Errorf("event step %d wall %f, want step %d after %f", ev.step, ev.wall, tt.step, evs[0].wall)
			}
			if len(ev.scalars) != len(tt.want) {
				t.Errorf("scalars %v, want %v", ev.scalars, tt.want)
			}
			for tag, v := range tt.want {
				if got, ok := ev.scalars[tag]; !ok || got != v {
					t.Errorf("%s = %v (present %v), want %v", tag, got, ok, v)
				}
			}
		})
	}
	if err := tb.Observe(steps[0]); err == nil {
		t.Error("Observe after Close: no error")
	}
}

func TestTFRecordReaderCatchesCorruption(t *testing.T) {
	dir := t.TempDir()
	tb, err := OpenTensorBoard(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Scalars(7, map[string]float64{"loss": 1}); err != nil {
		t.Fatal(err)
	}
	tb.Close()
	b, err := os.ReadFile(tb.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readTFRecords(b); err != nil {
		t.Fatalf("intact file: %v", err)
	}
	// The reader is only a check if it would see a flipped bit.
	for _, at := range []int{0, 9, 14, len(b) - 1} {
		bad := append([]byte(nil), b...)
		bad[at] ^= 0x10
		if _, err := readTFRecords(bad); err == nil {
			t.Errorf("a flipped bit at byte %d went unnoticed", at)
		}
	}
}

func TestOpenTensorBoardErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTensorBoard(filepath.Join(file, "tensorboard")); err == nil || !strings.HasPrefix(err.Error(), "tensorboard: ") {
		t.Errorf("a directory under a file: got %v, want a tensorboard: error", err)
	}
}
