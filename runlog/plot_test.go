package runlog

import (
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeMetrics(t *testing.T, dir, content string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, MetricsFile)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// metricsLines is a run of n steps; eval_loss every evalEvery steps (0: never).
func metricsLines(n, evalEvery int, scale float64) string {
	var b strings.Builder
	for s := 1; s <= n; s++ {
		fmt.Fprintf(&b, `{"step":%d,"loss":%g,"lr":%g,"grad_norm":1,"tokens":512,"tokens_per_s":%g,"memory":{"weights":1}`,
			s, scale*(5-float64(s)/float64(n)), 1e-3*float64(min(s, 10))/10, 1000+10*float64(s))
		if evalEvery > 0 && s%evalEvery == 0 {
			fmt.Fprintf(&b, `,"eval_loss":%g`, scale*(5.2-float64(s)/float64(n)))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func TestReadRun(t *testing.T) {
	dir := t.TempDir()
	// A resumed run: steps 3-4 written twice; the second time counts.
	path := writeMetrics(t, filepath.Join(dir, "resumed"), metricsLines(4, 2, 1)+
		`{"step":3,"loss":9,"lr":0.5,"tokens_per_s":1}`+"\n\n"+`{"step":4,"loss":8,"lr":0.5,"tokens_per_s":1}`)
	for _, arg := range []string{filepath.Dir(path), path} {
		run, err := ReadRun(arg)
		if err != nil {
			t.Fatal(err)
		}
		if run.Name != filepath.Join(dir, "resumed") || run.Path != path || run.Lines != 6 {
			t.Errorf("ReadRun(%s) = name %s path %s lines %d", arg, run.Name, run.Path, run.Lines)
		}
		loss := run.Series["loss"]
		if len(loss) != 4 || loss[2].X != 3 || loss[2].Y != 9 || loss[3].Y != 8 || loss[0].X != 1 {
			t.Errorf("loss %v: want steps 1-4, the last lines' values at 3 and 4", loss)
		}
		if ev := run.Series["eval_loss"]; len(ev) != 2 || ev[0].X != 2 || ev[1].X != 4 {
			t.Errorf("eval_loss %v: want steps 2 and 4", ev)
		}
	}
}

func TestReadRunErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string // nil: no metrics.jsonl; noDir: not even the directory
		want    string  // the error, with DIR for the run directory
	}{
		{"no directory", noDir, "DIR: no such run directory or metrics.jsonl"},
		{"no metrics.jsonl", nil, "DIR/metrics.jsonl: no such file (is DIR a run directory? it has no metrics.jsonl)"},
		{"empty", ptr(""), "DIR/metrics.jsonl: empty: no steps yet"},
		{"blank lines only", ptr("\n \n"), "DIR/metrics.jsonl: empty: no steps yet"},
		{"not JSON", ptr(`{"step":1,"loss":2}` + "\nloss 2.3\n"), "DIR/metrics.jsonl:2: not a JSON object: invalid character 'l'"},
		{"truncated", ptr(`{"step":1,"loss":2}` + "\n" + `{"step":2,"lo`), "DIR/metrics.jsonl:2: not a JSON object: unexpected end of JSON input"},
		{"an array", ptr("[1,2]\n"), "DIR/metrics.jsonl:1: not a JSON object: json: cannot unmarshal array"},
		{"no step", ptr(`{"loss":2}` + "\n"), `DIR/metrics.jsonl:1: no "step" field`},
		{"fractional step", ptr(`{"step":1.5,"loss":2}` + "\n"), `DIR/metrics.jsonl:1: "step" is 1.5, not a step number`},
		{"string step", ptr(`{"step":"one","loss":2}` + "\n"), `DIR/metrics.jsonl:1: "step" is one, not a step number`},
		{"string loss", ptr(`{"step":1}` + "\n" + `{"step":2,"loss":"NaN"}` + "\n"), `DIR/metrics.jsonl:2: "loss" is NaN, not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			switch tt.content {
			case noDir:
			case nil:
				if err := os.Mkdir(run, 0o755); err != nil {
					t.Fatal(err)
				}
			default:
				writeMetrics(t, run, *tt.content)
			}
			_, err := ReadRun(run)
			want := strings.ReplaceAll(tt.want, "DIR", run)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got error %v\nwant one starting %s", err, want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

var noDir = ptr("")

func TestPlotPNG(t *testing.T) {
	dir := t.TempDir()
	var runs []Run
	for i, spec := range []struct {
		steps, evalEvery int
		scale            float64
	}{{200, 50, 1}, {120, 0, 0.9}, {1, 0, 1.1}} { // the last: a single step, drawn as a point
		writeMetrics(t, filepath.Join(dir, fmt.Sprint("run", i)), metricsLines(spec.steps, spec.evalEvery, spec.scale))
		r, err := ReadRun(filepath.Join(dir, fmt.Sprint("run", i)))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	tests := []struct {
		name          string
		runs          []Run
		width, height int
		minColors     int // distinct colors in the lines: the runs' (and antialiased shades)
	}{
		{"three runs", runs, 1200, 800, 3},
		{"one run", runs[:1], 640, 480, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Plot(&buf, tt.runs, tt.width, tt.height); err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if b := img.Bounds(); b.Dx() != tt.width || b.Dy() != tt.height {
				t.Fatalf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), tt.width, tt.height)
			}
			nonWhite, colors := 0, map[color.RGBA]int{}
			b := img.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
					if c != (color.RGBA{255, 255, 255, 255}) {
						nonWhite++
					}
					for _, rc := range runColors {
						if c == rc {
							colors[c]++
						}
					}
				}
			}
			if nonWhite < tt.width*tt.height/100 {
				t.Errorf("only %d pixels are not the white background", nonWhite)
			}
			if len(colors) < tt.minColors {
				t.Errorf("run colors drawn: %v, want at least %d distinct", colors, tt.minColors)
			}
		})
	}
}

func TestPlotErrors(t *testing.T) {
	var buf bytes.Buffer
	tests := []struct {
		name string
		runs []Run
		w, h int
		want string
	}{
		{"no runs", nil, 800, 600, "plot: no runs"},
		{"too small", []Run{{Name: "r"}}, 100, 600, "plot: 100x600 pixels is too small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Plot(&buf, tt.runs, tt.w, tt.h)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}
}
