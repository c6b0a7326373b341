package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/torusml/torus/data"
)

// PasskeyConfig is the grid Passkey evaluates: Samples samples per (length,
// depth) cell, each a data.NewPasskey sample fed as byte tokens.
type PasskeyConfig struct {
	Lengths  []int     // tokens per sample, each >= data.PasskeyMinLen
	Depths   []float64 // where the key sits, each in [0, 1]; nil: DefaultDepths
	Samples  int       // per cell; 0: 5
	Seed     uint64
	Progress io.Writer // a line per sample; nil: quiet
}

// DefaultDepths are 0, 0.25, 0.5, 0.75 and 1.
var DefaultDepths = []float64{0, 0.25, 0.5, 0.75, 1}

// Validate reports the first bad setting.
func (c PasskeyConfig) Validate() error {
	if len(c.Lengths) == 0 {
		return errors.New("eval: passkey: no lengths")
	}
	for _, l := range c.Lengths {
		if l < data.PasskeyMinLen {
			return fmt.Errorf("eval: passkey: length %d is below %d, the shortest sample", l, data.PasskeyMinLen)
		}
	}
	for _, d := range c.Depths {
		if !(d >= 0 && d <= 1) {
			return fmt.Errorf("eval: passkey: depth %g is outside [0, 1]", d)
		}
	}
	if c.Samples < 0 {
		return fmt.Errorf("eval: passkey: samples must be >= 1, got %d", c.Samples)
	}
	return nil
}

// PasskeyResult is the accuracy of every cell: rows are lengths, columns depths.
type PasskeyResult struct {
	Lengths      []int       `json:"lengths"`
	Depths       []float64   `json:"depths"`
	Samples      int         `json:"samples"` // per cell
	Seed         uint64      `json:"seed"`
	Correct      [][]int     `json:"correct"`        // [length][depth]: samples answered right
	Accuracy     [][]float64 `json:"accuracy"`       // [length][depth]: Correct / Samples
	MeanByLength []float64   `json:"mean_by_length"` // over depths
	// AnswerNLL is the mean negative log-likelihood (nats) of the answer's
	// digits, [length][depth]: ln 10 = 2.30 when the model guesses, near 0 when
	// it retrieves. It moves long before accuracy does while a model learns.
	AnswerNLL [][]float64 `json:"answer_nll"`
	Mean      float64     `json:"mean"`
	Seconds   float64     `json:"seconds"`
}

// passkeyRNG is the generator of cell (i, j): each cell's samples depend only
// on the seed and the cell, not on which other cells are evaluated.
func passkeyRNG(seed uint64, i, j int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(i)<<32|uint64(j)))
}

// Passkey evaluates passkey retrieval on the grid of cfg. A sample is right
// when the model's argmax at each of the five positions before an answer digit
// is that digit: teacher-forcing the text gives exactly what greedy decoding
// after the question would write.
func (m *Model) Passkey(ctx context.Context, cfg PasskeyConfig) (*PasskeyResult, error) {
	if cfg.Depths == nil {
		cfg.Depths = DefaultDepths
	}
	if cfg.Samples == 0 {
		cfg.Samples = 5
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if v := m.Config().Vocab; v < 256 {
		return nil, fmt.Errorf("eval: passkey feeds bytes as tokens; the model's vocabulary is %d, below 256", v)
	}
	res := &PasskeyResult{Lengths: cfg.Lengths, Depths: cfg.Depths, Samples: cfg.Samples, Seed: cfg.Seed}
	start := time.Now()
	cells := len(cfg.Lengths) * len(cfg.Depths)
	for i, length := range cfg.Lengths {
		res.Correct = append(res.Correct, make([]int, len(cfg.Depths)))
		res.Accuracy = append(res.Accuracy, make([]float64, len(cfg.Depths)))
		res.AnswerNLL = append(res.AnswerNLL, make([]float64, len(cfg.Depths)))
		for j, depth := range cfg.Depths {
			rng := passkeyRNG(cfg.Seed, i, j)
			for s := range cfg.Samples {
				t0 := time.Now()
				ok, nll, err := m.PasskeySample(ctx, data.NewPasskey(length, depth, rng))
				if err != nil {
					return nil, fmt.Errorf("eval: passkey length %d depth %g sample %d: %w", length, depth, s, err)
				}
				if ok {
					res.Correct[i][j]++
				}
				res.AnswerNLL[i][j] += nll / float64(cfg.Samples)
				if cfg.Progress != nil {
					fmt.Fprintf(cfg.Progress, "passkey: cell %d/%d length %d depth %.2f sample %d/%d: %s in %s, %s elapsed\n",
						i*len(cfg.Depths)+j+1, cells, length, depth, s+1, cfg.Samples, rightWrong(ok),
						time.Since(t0).Round(10*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
				}
			}
			res.Accuracy[i][j] = float64(res.Correct[i][j]) / float64(cfg.Samples)
		}
	}
	res.summarize()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func rightWrong(ok bool) string {
	if ok {
		return "right"
	}
	return "wrong"
}

// summarize fills the means from Accuracy.
func (r *PasskeyResult) summarize() {
	r.MeanByLength = make([]float64, len(r.Accuracy))
	var all float64
	for i, row := range r.Accuracy {
		var s float64
		for _, a := range row {
			s += a
		}
		r.MeanByLength[i] = s / float64(len(row))
		all += r.MeanByLength[i]
	}
	r.Mean = all / float64(len(r.Accuracy))
}

// PasskeySample runs one sample and reports whether the model retrieves its
// key, and the mean negative log-likelihood of the key's digits.
func (m *Model) PasskeySample(ctx context.Context, p data.Passkey) (ok bool, nll float64, err error) {
	if p.AnswerAt < 1 || p.AnswerAt+len(p.Key) > len(p.Text) || len(p.Key) == 0 {
		return false, 0, fmt.Errorf("eval: passkey answer at %d of a %d-byte sample", p.AnswerAt, len(p.Text))
	}
	tokens := make([]int32, len(p.Text))
	for i, b := range p.Text {
		tokens[i] = int32(b)
	}
	h, err := m.Hidden(ctx, tokens)
	if err != nil {
		return false, 0, err
	}
	// Only the rows that predict the answer digits go through the head.
	logits, err := m.LogitsRows(h, p.AnswerAt-1, p.AnswerAt-1+len(p.Key))
	if err != nil {
		return false, 0, err
	}
	rows := Rows(logits)
	for i, row := range rows {
		x := make([]float64, len(row))
		for k, v := range row {
			x[k] = float64(v)
		}
		nll += logSumExp(x) - x[p.Key[i]]
	}
	return PasskeyCorrect(rows, p.Key), nll / float64(len(rows)), nil
}

// PasskeyCorrect reports whether logits, one row per answer digit (row i
// predicting the key's byte i, from the position before it), pick the key.
func PasskeyCorrect(logits [][]float32, key string) bool {
	if len(logits) != len(key) {
		return false
	}
	for i := range key {
		if Argmax(logits[i]) != int32(key[i]) {
			return false
		}
	}
	return true
}

// LengthLabel writes a length as 4k when it is a whole number of 1024s.
func LengthLabel(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return strconv.Itoa(n/1024) + "k"
	}
	return strconv.Itoa(n)
}

// WriteTable writes the accuracy grid in percent: a row per length, a column
// per depth, and the mean over depths.
func (r *PasskeyResult) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "length \\ depth\t")
	for _, d := range r.Depths {
		fmt.Fprintf(tw, "%g\t", d)
	}
	fmt.Fprintln(tw, "mean\t")
	for i, l := range r.Lengths {
		fmt.Fprintf(tw, "%s\t", LengthLabel(l))
		for _, a := range r.Accuracy[i] {
			fmt.Fprintf(tw, "%.0f%%\t", 100*a)
		}
		fmt.Fprintf(tw, "%.0f%%\t\n", 100*r.MeanByLength[i])
	}
	fmt.Fprintf(tw, "all\t")
	for range r.Depths {
		fmt.Fprint(tw, "\t")
	}
	fmt.Fprintf(tw, "%.1f%%\t\n", 100*r.Mean)
	if len(r.AnswerNLL) == len(r.Lengths) {
		fmt.Fprint(tw, "answer NLL\t")
		for range r.Depths {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprintln(tw, "\t")
		for i, l := range r.Lengths {
			fmt.Fprintf(tw, "%s\t", LengthLabel(l))
			var mean float64
			for _, v := range r.AnswerNLL[i] {
				fmt.Fprintf(tw, "%.2f\t", v)
				mean += v / float64(len(r.AnswerNLL[i]))
			}
			fmt.Fprintf(tw, "%.2f\t\n", mean)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d samples per cell, seed %d, %.1f s\n", r.Samples, r.Seed, r.Seconds)
	return err
}
