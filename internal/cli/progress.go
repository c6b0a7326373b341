package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/torusml/torus/trainer"
)

// progress shows training as it goes: on a terminal one live line redrawn every
// step ("bar"), elsewhere one plain line every `every` steps ("plain").
type progress struct {
	w      io.Writer
	mode   string
	every  int
	total  int
	start  time.Time
	tokens int
	last   trainer.StepStats
	first  trainer.StepStats // the first step of this process (after a resume, not step 1)
	seen   int
	recent []float64    // losses of the last steps, for a smoothed final figure
	rate   []rateSample // the last tokensWindow steps after the first, for tokens/s
	live   bool         // a live line is on screen
}

// tokensWindow is how many steps the tokens/s of the progress line averages
// over: one step's figure is noisy (other processes, the garbage collector).
const tokensWindow = 20

// rateSample is one step's tokens/s and how long the step took.
type rateSample struct{ tokensPerS, seconds float64 }

// tokensPerS is the tokens/s over the last tokensWindow steps: their tokens
// over their time (each step's rate weighted by its seconds). The process's
// first step, which compiles, is left out once there is another.
func (p *progress) tokensPerS(s trainer.StepStats) float64 {
	if p.seen == 1 {
		return s.TokensPerS
	}
	p.rate = append(p.rate, rateSample{s.TokensPerS, s.StepSeconds})
	if len(p.rate) > tokensWindow {
		p.rate = p.rate[1:]
	}
	var tokens, secs, sum float64
	for _, r := range p.rate {
		tokens += r.tokensPerS * r.seconds
		secs += r.seconds
		sum += r.tokensPerS
	}
	if secs > 0 {
		return tokens / secs
	}
	return sum / float64(len(p.rate))
}

func newProgress(w io.Writer, mode string, every, total int) *progress {
	if mode == "auto" || mode == "" {
		mode = "plain"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				mode = "bar"
			}
		}
	}
	return &progress{w: w, mode: mode, every: max(every, 1), total: total, start: time.Now()}
}

func (p *progress) step(s trainer.StepStats) {
	if p.seen == 0 {
		p.first = s
	}
	p.seen++
	p.last = s
	p.recent = append(p.recent, s.Loss)
	if n := max(p.total/20, 1); len(p.recent) > n { // the last 5% of the run
		p.recent = p.recent[1:]
	}
	p.tokens += s.Tokens
	elapsed := time.Since(p.start)
	eta := time.Duration(float64(elapsed) / float64(p.seen) * float64(p.total-s.Step))
	loss := fmt.Sprintf("loss %.4f", s.Loss)
	if s.EvalLoss != nil { // every log.eval_every steps: the held-out documents' loss
		loss += fmt.Sprintf("  eval %.4f", *s.EvalLoss)
	}
	line := fmt.Sprintf("step %*d/%d  %s  lr %.2e  |g| %.3f  %6.0f tok/s  %.2fs/step  rss %s  eta %s",
		len(fmt.Sprint(p.total)), s.Step, p.total, loss, s.LR, s.GradNorm, p.tokensPerS(s), s.StepSeconds,
		bytesHuman(s.PeakRSSBytes), eta.Round(time.Second))
	if s.MFU > 0 {
		line += fmt.Sprintf("  mfu %.1f%%", 100*s.MFU)
	}
	if s.MemoryUsed > 0 { // on a GPU: this process's device memory, and the GPU's load
		line += fmt.Sprintf("  gpu %s %d%%", bytesHuman(s.MemoryUsed), s.GPUUtilization)
	}
	if s.BytesSent > 0 {
		line += fmt.Sprintf("  comm wait %.0f%%  sent %s", 100*s.CommWaitSeconds/s.StepSeconds, bytesHuman(s.BytesSent))
	}
	if s.Checkpoint != "" {
		line += "  ckpt " + s.Checkpoint
	}
	switch p.mode {
	case "bar":
		const width = 20
		filled := width * s.Step / max(p.total, 1)
		fmt.Fprintf(p.w, "\r\033[K[%s%s] %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), line)
		p.live = true
		if s.Step%p.every == 0 || s.Step == p.total || s.EvalLoss != nil {
			fmt.Fprintln(p.w) // keep a line in the scrollback every `every` steps, and each eval
			p.live = false
		}
	case "plain":
		if s.Step%p.every == 0 || p.seen == 1 || s.Step == p.total || s.EvalLoss != nil {
			fmt.Fprintln(p.w, line)
		}
	}
}

func (p *progress) done() {
	if p.live {
		fmt.Fprintln(p.w)
	}
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// summary: the first step's loss and the mean over the last 5% of steps (one
// sequence's loss is noisy: documents differ).
func (p *progress) summary() string {
	if len(p.recent) == 0 {
		return "no steps"
	}
	var sum float64
	for _, l := range p.recent {
		sum += l
	}
	return fmt.Sprintf("loss %.4f at step %d, %.4f mean over the last %d steps", p.first.Loss, p.first.Step, sum/float64(len(p.recent)), len(p.recent))
}
