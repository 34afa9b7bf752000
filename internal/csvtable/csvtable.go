// Package csvtable reads CSV files that have a header row by column name,
// and names the line and column in every error: traces for the predictor
// and the simulator, and the simulator's cost data.
package csvtable

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Table is a CSV file being read row by row.
type Table struct {
	cr      *csv.Reader
	header  []string
	index   map[string]int
	missing []string
	line    int // of the current row
	rows    int
	rec     []string
}

// Open reads the header row of r, after a byte order mark if there is one.
func Open(r io.Reader) (*Table, error) {
	br := bufio.NewReader(r)
	if mark, err := br.Peek(3); err == nil && string(mark) == "\ufeff" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty")
	}
	if err != nil {
		return nil, fmt.Errorf("reading the header: %w", err)
	}
	t := &Table{cr: cr, header: make([]string, len(header)), index: make(map[string]int, len(header)), line: 1}
	for i, name := range header {
		t.header[i] = strings.TrimSpace(name)
		t.index[t.header[i]] = i
	}
	return t, nil
}

// Column returns the index of the named column, or -1 when name is empty
// (an optional column not asked for). A name the header lacks also
// returns -1 and is kept for Missing, under what (the flag or field that
// named it; none when empty).
func (t *Table) Column(what, name string) int {
	if name == "" {
		return -1
	}
	i, ok := t.index[name]
	if !ok {
		msg := fmt.Sprintf("no column %q", name)
		if what != "" {
			msg = what + ": " + msg
		}
		t.missing = append(t.missing, msg)
		return -1
	}
	return i
}

// Require is Column for a column that must be named: an empty name is
// kept for Missing, as what is required or, in a list (list true), as an
// empty name in it.
func (t *Table) Require(what, name string, list bool) int {
	switch {
	case name == "" && list:
		t.missing = append(t.missing, what+": an empty column name")
		return -1
	case name == "":
		t.missing = append(t.missing, what+" is required")
		return -1
	}
	return t.Column(what, name)
}

// Missing reports every column Column and Require were asked for that
// the header lacks or that was not named, and the columns the header has;
// nil when none is missing.
func (t *Table) Missing() error {
	if len(t.missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s (columns: %s)", strings.Join(t.missing, "; "), strings.Join(t.header, ", "))
}

// Next reads the next row; it returns false at the end of the file.
func (t *Table) Next() (bool, error) {
	rec, err := t.cr.Read()
	if errors.Is(err, io.EOF) {
		return false, nil
	}
	if err != nil {
		return false, err // csv's errors name the line
	}
	t.rec = rec
	t.rows++
	t.line, _ = t.cr.FieldPos(0) // blank lines and quoted newlines count
	return true, nil
}

// Line is the line the current row starts on (the header is line 1).
func (t *Table) Line() int { return t.line }

// Row counts the rows read so far: the current row's number, from 1.
func (t *Table) Row() int { return t.rows }

// String returns the current row's value in column col, trimmed; "" for
// col -1.
func (t *Table) String(col int) string {
	if col < 0 {
		return ""
	}
	return strings.TrimSpace(t.rec[col])
}

// Float returns the current row's number in column col: NaN when col is -1
// or the value is empty, an error naming the line and column when it is
// not a finite number.
func (t *Table) Float(col int) (float64, error) {
	s := t.String(col)
	if s == "" {
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, t.Errorf(col, "%q is not a number", t.rec[col])
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, t.Errorf(col, "%s is not a finite number", s)
	}
	return v, nil
}

// Errorf returns an error about the current row's column col (-1: the
// row).
func (t *Table) Errorf(col int, format string, args ...any) error {
	if col < 0 {
		return fmt.Errorf("line %d: %s", t.line, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("line %d column %s: %s", t.line, t.header[col], fmt.Sprintf(format, args...))
}
