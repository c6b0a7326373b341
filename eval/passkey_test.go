package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// digitLogits are 5 rows over 256 bytes whose argmaxes are the bytes of s.
func digitLogits(s string) [][]float32 {
	rows := make([][]float32, len(s))
	for i := range rows {
		rows[i] = make([]float32, 256)
		for j := range rows[i] {
			rows[i][j] = float32(j%7) * 0.1
		}
		rows[i][s[i]] = 3
	}
	return rows
}

func TestPasskeyCorrect(t *testing.T) {
	if !PasskeyCorrect(digitLogits("68217"), "68217") {
		t.Error("the key's digits at every row: scored wrong")
	}
	for _, pred := range []string{"68218", "08217", "6821", "682170", "86217"} {
		if PasskeyCorrect(digitLogits(pred), "68217") {
			t.Errorf("predicted %q for key 68217: scored right", pred)
		}
	}
}

// copyModel predicts that the next token is the current one: attention and
// MLP add nothing (o_proj and down_proj are zero) and the embedding and the
// head are the identity, so row i's argmax is tokens[i].
func copyModel(t *testing.T) *Model {
	t.Helper()
	cfg := model.Config{Vocab: 256, Dim: 256, Layers: 1, Heads: 2, KVHeads: 1, MLPDim: 8, RopeTheta: 10000, NormEps: 1e-5}
	m := tinyModel(t, cfg, dtypes.Float32, 512)
	p := m.Params
	eye := make([]float64, 256*256)
	for i := range 256 {
		eye[i*256+i] = 1
	}
	p.T["model.embed_tokens.weight"] = host.FromFloat64(dtypes.Float32, eye, 256, 256)
	p.T["lm_head.weight"] = host.FromFloat64(dtypes.Float32, eye, 256, 256)
	for _, name := range []string{model.OProj, model.DownProj} {
		n := model.LayerParam(0, name)
		p.T[n] = host.NewZeros(dtypes.Float32, p.T[n].Shape().Dimensions...)
	}
	return m
}

// TestPasskeySampleRows checks which positions are scored, on a model whose
// predictions are known: with the copy model a sample is right exactly when
// the byte before the answer and the answer's digits are all the same digit.
func TestPasskeySampleRows(t *testing.T) {
	m := copyModel(t)
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"The pass key is 777777.", true},  // rows predict 7 7 7 7 7
		{"The pass key is x77777.", false}, // row 0 predicts x
		{"The pass key is 777778.", false}, // row 4 predicts 7, the key ends in 8
	} {
		p := data.Passkey{Text: []byte(tc.text), AnswerAt: len(tc.text) - 6}
		p.Key = tc.text[p.AnswerAt : p.AnswerAt+5]
		got, nll, err := m.PasskeySample(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%q (key %s): right = %v, want %v", tc.text, p.Key, got, tc.want)
		}
		if !(nll >= 0) || tc.want && nll > 1 || !tc.want && nll < 0.1 {
			t.Errorf("%q: answer NLL %.3g, want near 0 when right and larger when wrong", tc.text, nll)
		}
	}
	// Real samples end "is 12345.": the copy model predicts the space first.
	res, err := m.Passkey(context.Background(), PasskeyConfig{Lengths: []int{128, 200}, Depths: []float64{0, 1}, Samples: 2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mean != 0 || len(res.Accuracy) != 2 || len(res.Accuracy[0]) != 2 || len(res.MeanByLength) != 2 {
		t.Errorf("copy model on real samples: %+v, want every cell 0", res)
	}
}

// TestPasskeyGrid: the result's shape, means, table and JSON, from a grid of
// known accuracies.
func TestPasskeyGrid(t *testing.T) {
	r := &PasskeyResult{Lengths: []int{1024, 4096}, Depths: []float64{0, 0.5, 1}, Samples: 5,
		Correct: [][]int{{5, 4, 0}, {1, 2, 5}}}
	for _, row := range r.Correct {
		var acc []float64
		for _, c := range row {
			acc = append(acc, float64(c)/5)
		}
		r.Accuracy = append(r.Accuracy, acc)
	}
	r.summarize()
	if d := r.MeanByLength[0] - 0.6; d*d > 1e-18 {
		t.Errorf("mean of 1k row %g, want 0.6", r.MeanByLength[0])
	}
	if d := r.Mean - (0.6+8.0/15)/2; d*d > 1e-18 {
		t.Errorf("mean %g", r.Mean)
	}
	var tb strings.Builder
	if err := r.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1k", "4k", "100%", "80%", "0%", "60%", "mean"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back PasskeyResult
	if err := json.Unmarshal(b, &back); err != nil || back.Correct[1][2] != 5 || back.Accuracy[0][1] != 0.8 {
		t.Errorf("JSON round trip: %v, %+v", err, back)
	}
}

func TestPasskeyConfigErrors(t *testing.T) {
	m := tinyModel(t, tinyConfig, dtypes.Float32, 512)
	for _, tc := range []struct {
		cfg  PasskeyConfig
		want string
	}{
		{PasskeyConfig{}, "no lengths"},
		{PasskeyConfig{Lengths: []int{50}}, "below"},
		{PasskeyConfig{Lengths: []int{1024}, Depths: []float64{0, 1.5}}, "depth 1.5"},
		{PasskeyConfig{Lengths: []int{1024}, Depths: []float64{-0.1}}, "depth -0.1"},
		{PasskeyConfig{Lengths: []int{1024}}, "vocabulary is 64"},
	} {
		if _, err := m.Passkey(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one with %q", tc.cfg, err, tc.want)
		}
	}
}

func TestCellColor(t *testing.T) {
	if c := cellColor(0); c != red {
		t.Errorf("0%%: %v, want red %v", c, red)
	}
	if c := cellColor(1); c != green {
		t.Errorf("100%%: %v, want green %v", c, green)
	}
	if c := cellColor(0.5); c != yellow {
		t.Errorf("50%%: %v, want yellow %v", c, yellow)
	}
	// Redder to greener, step by step.
	prev := cellColor(0)
	for a := 0.1; a <= 1; a += 0.1 {
		c := cellColor(a)
		if int(c.G)-int(c.R) <= int(prev.G)-int(prev.R) {
			t.Errorf("cellColor(%.1f) = %v is no greener than %v", a, c, prev)
		}
		prev = c
	}
}

// TestHeatmapPNG decodes the PNG and reads every cell's color back.
func TestHeatmapPNG(t *testing.T) {
	r := &PasskeyResult{Lengths: []int{1024, 4096, 16384}, Depths: []float64{0, 0.25, 0.5, 0.75, 1}, Samples: 4,
		Accuracy: [][]float64{{1, 1, 0.75, 0.5, 0}, {0.25, 0, 0, 1, 0.5}, {0, 0, 0, 0, 1}}}
	r.summarize()
	var buf bytes.Buffer
	if err := r.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	h := newHeatmap(r)
	if img.Bounds() != h.bounds() {
		t.Fatalf("image %v, want %v", img.Bounds(), h.bounds())
	}
	rgba := func(x, y int) color.RGBA {
		r, g, b, a := img.At(x, y).RGBA()
		return color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), uint8(a >> 8)}
	}
	for i := range r.Lengths {
		for j := 0; j <= len(r.Depths); j++ {
			acc := r.MeanByLength[i]
			if j < len(r.Depths) {
				acc = r.Accuracy[i][j]
			}
			cell := h.cellRect(i, j)
			if got, want := rgba(cell.Min.X+3, cell.Min.Y+3), cellColor(acc); got != want {
				t.Errorf("cell (%d, %d), accuracy %g: color %v, want %v", i, j, acc, got, want)
			}
			// The accuracy is written in the cell.
			ink, text := textOn(cellColor(acc)), 0
			for y := cell.Min.Y; y < cell.Max.Y; y++ {
				for x := cell.Min.X; x < cell.Max.X; x++ {
					if rgba(x, y) == ink {
						text++
					}
				}
			}
			if text == 0 {
				t.Errorf("cell (%d, %d): no text drawn", i, j)
			}
		}
	}
	if got := rgba(h.cellRect(0, 0).Min.X+3, h.cellRect(0, 0).Min.Y+3); got.G <= got.R {
		t.Errorf("a 100%% cell is %v: not green", got)
	}
	if got := rgba(h.cellRect(2, 0).Min.X+3, h.cellRect(2, 0).Min.Y+3); got.R <= got.G {
		t.Errorf("a 0%% cell is %v: not red", got)
	}
	leg := h.legendRect()
	if l, rt := rgba(leg.Min.X, leg.Min.Y+2), rgba(leg.Max.X-1, leg.Min.Y+2); l != red || rt != green {
		t.Errorf("legend runs %v to %v, want red to green", l, rt)
	}
}
