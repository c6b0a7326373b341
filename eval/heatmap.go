package eval

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"strconv"
)

// The passkey heatmap: a row per length, a column per depth, then the mean
// over depths; each cell colored from red (0%) through yellow to green (100%)
// and labelled with its accuracy (white on the dark ends) in a tiny built-in
// bitmap font (no font files needed). A legend strip under the grid runs from
// 0 to 100%.
//
//	         depth %
//	   len   0   25  50  75  100    mean
//	   1k   [..][..][..][..][..]    [..]
//	   4k   [..][..][..][..][..]    [..]
//	        0 [red ... yellow ... green] 100

const (
	fontScale = 2             // screen pixels per font pixel
	glyphW    = 3 * fontScale // a glyph is 3 x 5 font pixels
	glyphH    = 5 * fontScale
	advance   = glyphW + 2 // glyph width and spacing
	margin    = 8          // around the picture
	cellW     = 44         // grid cell
	cellH     = 26
	meanGap   = 10         // between the depth columns and the mean column
	legendH   = 10         // legend strip height
	labelGap  = 6          // between a label and what it labels
	headerH   = glyphH + 4 // one line of text and its spacing
	gridTop   = margin + 2*headerH
	cellInset = 1 // a white line between cells
)

// glyphs are the 3 x 5 bitmaps of the characters the heatmap writes.
var glyphs = map[rune][5]string{
	'0': {"###", "#.#", "#.#", "#.#", "###"},
	'1': {".#.", "##.", ".#.", ".#.", "###"},
	'2': {"###", "..#", "###", "#..", "###"},
	'3': {"###", "..#", ".##", "..#", "###"},
	'4': {"#.#", "#.#", "###", "..#", "..#"},
	'5': {"###", "#..", "###", "..#", "###"},
	'6': {"###", "#..", "###", "#.#", "###"},
	'7': {"###", "..#", ".#.", ".#.", ".#."},
	'8': {"###", "#.#", "###", "#.#", "###"},
	'9': {"###", "#.#", "###", "..#", "###"},
	'k': {"#..", "#.#", "##.", "#.#", "#.#"},
	'%': {"#.#", "..#", ".#.", "#..", "#.#"},
	'.': {"...", "...", "...", "...", ".#."},
	'a': {"...", ".##", "#.#", "#.#", ".##"},
	'd': {"..#", ".##", "#.#", "#.#", ".##"},
	'e': {"...", ".##", "###", "#..", ".##"},
	'h': {"#..", "#..", "##.", "#.#", "#.#"},
	'l': {"##.", ".#.", ".#.", ".#.", "###"},
	'm': {"...", "#.#", "###", "#.#", "#.#"},
	'n': {"...", "##.", "#.#", "#.#", "#.#"},
	'p': {"...", "##.", "#.#", "##.", "#.."},
	't': {".#.", "###", ".#.", ".#.", ".##"},
	' ': {"...", "...", "...", "...", "..."},
}

var (
	textColor  = color.RGBA{30, 30, 30, 255}
	background = color.RGBA{255, 255, 255, 255}
	// The red-yellow-green ends and middle (ColorBrewer RdYlGn).
	red    = color.RGBA{215, 48, 39, 255}
	yellow = color.RGBA{254, 224, 139, 255}
	green  = color.RGBA{26, 152, 80, 255}
)

// textWidth is the width in pixels of s written with drawText.
func textWidth(s string) int {
	if s == "" {
		return 0
	}
	return len(s)*advance - (advance - glyphW)
}

// drawText writes s with its top-left corner at (x, y). Characters without a
// glyph are left blank.
func drawText(img *image.RGBA, x, y int, s string, c color.Color) {
	for i, r := range s {
		g, ok := glyphs[r]
		if !ok {
			continue
		}
		for gy, line := range g {
			for gx, px := range line {
				if px != '#' {
					continue
				}
				x0, y0 := x+i*advance+gx*fontScale, y+gy*fontScale
				draw.Draw(img, image.Rect(x0, y0, x0+fontScale, y0+fontScale), image.NewUniform(c), image.Point{}, draw.Src)
			}
		}
	}
}

// cellColor is the color of an accuracy in [0, 1]: red, yellow at 0.5, green.
func cellColor(acc float64) color.RGBA {
	acc = min(max(acc, 0), 1)
	lerp := func(a, b color.RGBA, t float64) color.RGBA {
		f := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*t + 0.5) }
		return color.RGBA{f(a.R, b.R), f(a.G, b.G), f(a.B, b.B), 255}
	}
	if acc < 0.5 {
		return lerp(red, yellow, acc/0.5)
	}
	return lerp(yellow, green, (acc-0.5)/0.5)
}

// textOn is the color of text on background c: white on dark colors, else dark.
func textOn(c color.RGBA) color.RGBA {
	if 0.299*float64(c.R)+0.587*float64(c.G)+0.114*float64(c.B) < 140 {
		return background
	}
	return textColor
}

// heatmap is the layout of the picture of a result.
type heatmap struct {
	rows, cols int // lengths, depths
	left       int // x of the grid's first column
	rowLabels  []string
	colLabels  []string
}

func newHeatmap(r *PasskeyResult) heatmap {
	h := heatmap{rows: len(r.Lengths), cols: len(r.Depths)}
	labelW := textWidth("len")
	for _, l := range r.Lengths {
		s := LengthLabel(l)
		h.rowLabels = append(h.rowLabels, s)
		labelW = max(labelW, textWidth(s))
	}
	for _, d := range r.Depths {
		h.colLabels = append(h.colLabels, strconv.FormatFloat(100*d, 'f', -1, 64))
	}
	h.left = margin + labelW + labelGap
	return h
}

// cellRect is cell (i, j) with its white border; j == cols is the mean column.
func (h heatmap) cellRect(i, j int) image.Rectangle {
	x := h.left + j*cellW
	if j == h.cols {
		x += meanGap
	}
	y := gridTop + i*cellH
	return image.Rect(x, y, x+cellW, y+cellH)
}

func (h heatmap) legendRect() image.Rectangle {
	y := gridTop + h.rows*cellH + labelGap + 2
	x := h.left + textWidth("0") + labelGap
	return image.Rect(x, y, x+h.cols*cellW, y+legendH)
}

func (h heatmap) bounds() image.Rectangle {
	mean := h.cellRect(0, h.cols)
	leg := h.legendRect()
	w := max(mean.Max.X, leg.Max.X+labelGap+textWidth("100")) + margin
	return image.Rect(0, 0, w, leg.Max.Y+margin)
}

// draw paints the result.
func (h heatmap) draw(r *PasskeyResult) *image.RGBA {
	img := image.NewRGBA(h.bounds())
	draw.Draw(img, img.Bounds(), image.NewUniform(background), image.Point{}, draw.Src)
	drawText(img, h.left, margin, "depth %", textColor)
	labelY := margin + headerH
	drawText(img, margin, labelY, "len", textColor)
	center := func(rect image.Rectangle, s string) int { return rect.Min.X + (rect.Dx()-textWidth(s))/2 }
	for j, s := range h.colLabels {
		drawText(img, center(h.cellRect(0, j), s), labelY, s, textColor)
	}
	drawText(img, center(h.cellRect(0, h.cols), "mean"), labelY, "mean", textColor)
	for i := range h.rows {
		rect := h.cellRect(i, 0)
		drawText(img, margin, rect.Min.Y+(cellH-glyphH)/2, h.rowLabels[i], textColor)
		for j := 0; j <= h.cols; j++ {
			acc := r.MeanByLength[i]
			if j < h.cols {
				acc = r.Accuracy[i][j]
			}
			cell, c := h.cellRect(i, j).Inset(cellInset), cellColor(acc)
			draw.Draw(img, cell, image.NewUniform(c), image.Point{}, draw.Src)
			s := strconv.Itoa(int(100*acc + 0.5))
			drawText(img, center(cell, s), cell.Min.Y+(cell.Dy()-glyphH)/2, s, textOn(c))
		}
	}
	leg := h.legendRect()
	for x := leg.Min.X; x < leg.Max.X; x++ {
		c := cellColor(float64(x-leg.Min.X) / float64(leg.Dx()-1))
		draw.Draw(img, image.Rect(x, leg.Min.Y, x+1, leg.Max.Y), image.NewUniform(c), image.Point{}, draw.Src)
	}
	drawText(img, leg.Min.X-labelGap-textWidth("0"), leg.Min.Y, "0", textColor)
	drawText(img, leg.Max.X+labelGap, leg.Min.Y, "100", textColor)
	return img
}

// WritePNG writes the result as a heatmap PNG.
func (r *PasskeyResult) WritePNG(w io.Writer) error {
	if len(r.Lengths) == 0 || len(r.Depths) == 0 || len(r.Accuracy) != len(r.Lengths) {
		return fmt.Errorf("eval: heatmap of an empty or malformed result (%d lengths, %d depths)", len(r.Lengths), len(r.Depths))
	}
	return png.Encode(w, newHeatmap(r).draw(r))
}
