package runlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// TensorBoardScalars are the step fields written as TensorBoard scalars, by
// their metrics.jsonl names (which are the tags); a step lacking one (eval_loss
// on most steps) writes the others.
var TensorBoardScalars = []string{"loss", "lr", "grad_norm", "tokens_per_s", "eval_loss"}

// TensorBoard writes a run's scalars as a TensorBoard event file: TFRecord
// records (length, masked CRC-32C of the length, an Event protobuf, masked
// CRC-32C of it), the first Event naming the file version, then one Event per
// step holding a Summary of simple_value scalars. Each event is written to the
// file as it comes, so TensorBoard sees a run in progress.
//
// A nil *TensorBoard takes every call and does nothing.
type TensorBoard struct {
	f    *os.File
	path string
	now  func() time.Time
}

// OpenTensorBoard creates a new event file in dir (made if missing); a resumed
// run adds another file to the same directory, which TensorBoard reads as one run.
func OpenTensorBoard(dir string) (*TensorBoard, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	now := time.Now()
	// TensorBoard reads files whose name holds "tfevents"; the pid keeps two
	// processes started in the same second apart.
	path := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s.%d", now.Unix(), host, os.Getpid()))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tensorboard: %w", err)
	}
	tb := &TensorBoard{f: f, path: path, now: time.Now}
	ev := eventHeader(wallTime(now), 0)
	ev = protowire.AppendTag(ev, 3, protowire.BytesType) // file_version
	ev = protowire.AppendString(ev, "brain.Event:2")
	if err := tb.record(ev); err != nil {
		f.Close()
		return nil, err
	}
	return tb, nil
}

// Path is the event file's path.
func (tb *TensorBoard) Path() string {
	if tb == nil {
		return ""
	}
	return tb.path
}

// Observe writes one step's scalars (TensorBoardScalars): s is what the step
// writes to metrics.jsonl (the trainer's StepStats).
func (tb *TensorBoard) Observe(s any) error {
	if tb == nil {
		return nil
	}
	l, err := lineOf(s)
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	vals := map[string]float64{}
	for _, tag := range TensorBoardScalars {
		if v, ok := l.num[tag]; ok {
			vals[tag] = v
		}
	}
	return tb.Scalars(int64(l.num["step"]), vals)
}

// Scalars writes one event at step holding each value under its tag.
func (tb *TensorBoard) Scalars(step int64, vals map[string]float64) error {
	if tb == nil || len(vals) == 0 {
		return nil
	}
	if tb.f == nil {
		return errors.New("tensorboard: write after Close")
	}
	tags := make([]string, 0, len(vals))
	for t := range vals {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	var summary []byte
	for _, t := range tags {
		var v []byte
		v = protowire.AppendTag(v, 1, protowire.BytesType) // Summary.Value.tag
		v = protowire.AppendString(v, t)
		v = protowire.AppendTag(v, 2, protowire.Fixed32Type) // Summary.Value.simple_value (float)
		v = protowire.AppendFixed32(v, math.Float32bits(float32(vals[t])))
		summary = protowire.AppendTag(summary, 1, protowire.BytesType) // Summary.value (repeated)
		summary = protowire.AppendBytes(summary, v)
	}
	ev := eventHeader(wallTime(tb.now()), step)
	ev = protowire.AppendTag(ev, 5, protowire.BytesType) // Event.summary
	ev = protowire.AppendBytes(ev, summary)
	return tb.record(ev)
}

// Close closes the event file.
func (tb *TensorBoard) Close() error {
	if tb == nil || tb.f == nil {
		return nil
	}
	err := tb.f.Close()
	tb.f = nil
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	return nil
}

// eventHeader is an Event's wall_time (1, double) and step (2, int64).
func eventHeader(wall float64, step int64) []byte {
	var ev []byte
	ev = protowire.AppendTag(ev, 1, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(wall))
	if step != 0 { // proto3: a zero is left out
		ev = protowire.AppendTag(ev, 2, protowire.VarintType)
		ev = protowire.AppendVarint(ev, uint64(step))
	}
	return ev
}

func wallTime(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's checksum: CRC-32C, rotated right by 15 bits, plus a constant.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// record writes one TFRecord in a single write.
func (tb *TensorBoard) record(data []byte) error {
	buf := make([]byte, 0, 16+len(data))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(data)))
	buf = binary.LittleEndian.AppendUint32(buf, maskedCRC(buf[:8]))
	buf = append(buf, data...)
	buf = binary.LittleEndian.AppendUint32(buf, maskedCRC(data))
	if _, err := tb.f.Write(buf); err != nil {
		return fmt.Errorf("tensorboard: %s: %w", tb.path, err)
	}
	return nil
}
