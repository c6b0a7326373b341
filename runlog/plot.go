package runlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// MetricsFile is the name of a run directory's per-step metrics (trainer.RunDir.Metrics).
const MetricsFile = "metrics.jsonl"

// Run is one run's metrics.jsonl, read for plotting.
type Run struct {
	Name string // the run directory, as named: the legend's label
	Path string // its metrics.jsonl
	// Series holds each plotted field (PlotPanels' fields) by name: (step,
	// value) in step order. A step written twice (a run resumed from an
	// older checkpoint redoes steps) keeps its last line's value.
	Series map[string]plotter.XYs
	Lines  int // the metrics lines read
}

// Panel is one panel of a plot: a metrics.jsonl field against step.
type Panel struct {
	Field string // metrics.jsonl field
	Title string
	Y     string // y axis label
}

// PlotPanels are the panels of Plot, row by row in a 2x2 grid.
var PlotPanels = []Panel{
	{"loss", "training loss", "nats per token"},
	{"eval_loss", "eval loss", "nats per token"},
	{"lr", "learning rate", "lr"},
	{"tokens_per_s", "throughput", "tokens/s"},
}

// ReadRun reads the metrics of a run: arg is a run directory or a
// metrics.jsonl file. Every line must be a JSON object with a numeric "step";
// the plotted fields, where a line has them, must be numbers. Errors name the
// file and, for a bad line, its line number.
func ReadRun(arg string) (Run, error) {
	path, name := arg, filepath.Clean(arg)
	fi, err := os.Stat(arg)
	if errors.Is(err, fs.ErrNotExist) {
		return Run{}, fmt.Errorf("%s: no such run directory or %s", arg, MetricsFile)
	} else if err != nil {
		return Run{}, err
	}
	if fi.IsDir() {
		path = filepath.Join(arg, MetricsFile)
	} else {
		name = filepath.Dir(name)
	}
	run := Run{Name: name, Path: path, Series: map[string]plotter.XYs{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return run, fmt.Errorf("%s: no such file (is %s a run directory? it has no %s)", path, arg, MetricsFile)
	}
	if err != nil {
		return run, err
	}
	defer f.Close()
	values := map[string]map[float64]float64{} // field -> step -> value
	rd := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := rd.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return run, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if strings.TrimSpace(line) != "" {
			if perr := parseLine(line, values); perr != nil {
				return run, fmt.Errorf("%s:%d: %w", path, n, perr)
			}
			run.Lines++
		}
		if err != nil { // io.EOF
			break
		}
	}
	if run.Lines == 0 {
		return run, fmt.Errorf("%s: empty: no steps yet", path)
	}
	for field, byStep := range values {
		xys := make(plotter.XYs, 0, len(byStep))
		for s, v := range byStep {
			xys = append(xys, plotter.XY{X: s, Y: v})
		}
		sort.Slice(xys, func(i, j int) bool { return xys[i].X < xys[j].X })
		run.Series[field] = xys
	}
	return run, nil
}

func parseLine(line string, values map[string]map[float64]float64) error {
	var obj map[string]any
	if err := json.Unmarshal([]byte(line), &obj); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return fmt.Errorf("not a JSON object: %v (at byte %d)", err, syn.Offset)
		}
		return fmt.Errorf("not a JSON object: %v", err)
	}
	raw, ok := obj["step"]
	if !ok {
		return errors.New(`no "step" field`)
	}
	step, ok := raw.(float64)
	if !ok || step < 0 || step != math.Trunc(step) {
		return fmt.Errorf(`"step" is %v, not a step number`, raw)
	}
	for _, p := range PlotPanels {
		raw, ok := obj[p.Field]
		if !ok || raw == nil { // absent, or null: nothing to draw at this step
			continue
		}
		v, ok := raw.(float64)
		if !ok {
			return fmt.Errorf("%q is %v, not a number", p.Field, raw)
		}
		if values[p.Field] == nil {
			values[p.Field] = map[float64]float64{}
		}
		values[p.Field][step] = v
	}
	return nil
}

// runColors are the runs' line colors, in turn (gonum's dark palette and more).
var runColors = []color.RGBA{
	{24, 90, 169, 255}, {238, 46, 47, 255}, {0, 140, 72, 255}, {244, 125, 35, 255},
	{102, 44, 145, 255}, {162, 29, 33, 255}, {180, 56, 148, 255}, {0, 0, 0, 255},
}

// Plot draws runs as one PNG of width x height pixels on w: a 2x2 grid of
// PlotPanels, each run a line of its own color, named in the legend above.
func Plot(w io.Writer, runs []Run, width, height int) (err error) {
	if len(runs) == 0 {
		return errors.New("plot: no runs")
	}
	if width < 200 || height < 200 {
		return fmt.Errorf("plot: %dx%d pixels is too small (at least 200x200)", width, height)
	}
	defer func() { // gonum/plot panics on what it cannot draw; a plot command should say so instead
		if r := recover(); r != nil {
			err = fmt.Errorf("plot: %v", r)
		}
	}()
	const dpi = 96
	img := vgimg.NewWith(vgimg.UseWH(vg.Length(width)*vg.Inch/dpi, vg.Length(height)*vg.Inch/dpi), vgimg.UseDPI(dpi))
	const rows, cols = 2, 2
	grid := make([][]*plot.Plot, rows)
	for i, panel := range PlotPanels {
		p, err := panelPlot(panel, runs)
		if err != nil {
			return err
		}
		grid[i/cols] = append(grid[i/cols], p)
	}
	pad := vg.Length(8)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	// One legend for the figure, in a strip across the top: each run's color
	// and directory.
	legend := plot.NewLegend()
	legend.Top, legend.Left, legend.XOffs, legend.YOffs = true, true, 2*pad, -pad
	legend.ThumbnailWidth = vg.Points(30)
	for i, run := range runs {
		legend.Add(run.Name, &plotter.Line{LineStyle: draw.LineStyle{Color: runColors[i%len(runColors)], Width: vg.Points(3)}})
	}
	r := legend.Rectangle(dc)
	strip := r.Max.Y - r.Min.Y + 2*pad
	legend.Draw(draw.Crop(dc, 0, 0, dc.Max.Y-dc.Min.Y-strip, 0))
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: 2 * pad, PadX: 3 * pad, PadY: 3 * pad}
	canvases := plot.Align(grid, tiles, draw.Crop(dc, 0, 0, 0, -strip))
	for r := range grid {
		for c, p := range grid[r] {
			p.Draw(canvases[r][c])
		}
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("plot: write PNG: %w", err)
	}
	return nil
}

func panelPlot(panel Panel, runs []Run) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = panel.Title
	p.X.Label.Text = "step"
	p.Y.Label.Text = panel.Y
	p.Add(plotter.NewGrid())
	drawn := 0
	for i, run := range runs {
		xys := finite(run.Series[panel.Field])
		if len(xys) == 0 {
			continue
		}
		c := runColors[i%len(runColors)]
		line, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot: %s %s: %w", run.Path, panel.Field, err)
		}
		line.Color, line.Width = c, vg.Points(1.5)
		p.Add(line)
		if len(xys) <= 12 || panel.Field == "eval_loss" { // few points (evals, a short run): mark each
			pts, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, fmt.Errorf("plot: %s %s: %w", run.Path, panel.Field, err)
			}
			pts.Color, pts.Shape, pts.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
			p.Add(pts)
		}
		drawn++
	}
	if drawn == 0 {
		p.Title.Text += fmt.Sprintf(": no %s in %s", panel.Field, MetricsFile)
		p.HideAxes()
		p.X.Label.Text, p.Y.Label.Text = "", ""
	}
	return p, nil
}

// finite drops the points a line cannot be drawn through.
func finite(xys plotter.XYs) plotter.XYs {
	out := make(plotter.XYs, 0, len(xys))
	for _, p := range xys {
		if !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
			out = append(out, p)
		}
	}
	return out
}
