// Package plotsvg renders gonum plots as inline SVG for jobfleet's HTML
// reports.
package plotsvg

import (
	"bytes"
	"fmt"
	"html/template"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Render draws a titled plot with a grid, whose content add puts in, as
// an 8 by 4 inch SVG element.
func Render(title, x, y string, add func(*plot.Plot) error) (template.HTML, error) {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Add(plotter.NewGrid())
	if err := add(p); err != nil {
		return "", fmt.Errorf("plotting %s: %w", title, err)
	}
	c := vgsvg.New(8*vg.Inch, 4*vg.Inch)
	p.Draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return "", err
	}
	return template.HTML(buf.String()), nil // gonum's own SVG, no user text unescaped
}
