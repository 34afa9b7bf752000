package csvtable

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	t.Parallel()
	tab, err := Open(strings.NewReader(" time , peak,name\n1,2.5, a \n2,,b\n3,x,c\n4,Inf,d\n"))
	if err != nil {
		t.Fatal(err)
	}
	at, peak, name := tab.Column("--time-col", "time"), tab.Column("--peak-col", "peak"), tab.Column("--name-col", "name")
	if tab.Column("--pool-col", "") != -1 || tab.Missing() != nil {
		t.Fatalf("an empty name or present columns: %v", tab.Missing())
	}
	var got []string
	for {
		ok, err := tab.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		v, err := tab.Float(peak)
		switch tab.Line() {
		case 2:
			if x, _ := tab.Float(at); x != 1 || v != 2.5 || err != nil || tab.String(name) != "a" {
				t.Errorf("line 2: %v %v %v %q", x, v, err, tab.String(name))
			}
		case 3:
			if !math.IsNaN(v) || err != nil {
				t.Errorf("line 3: an empty value %v, %v: want NaN", v, err)
			}
		default:
			got = append(got, err.Error())
		}
		if s := tab.String(-1); s != "" {
			t.Errorf("column -1: %q", s)
		}
	}
	want := []string{`line 4 column peak: "x" is not a number`, "line 5 column peak: Inf is not a finite number"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("errors %q, want %q", got, want)
	}

	tab, err = Open(strings.NewReader("a,b\n"))
	if err != nil {
		t.Fatal(err)
	}
	tab.Column("--time-col", "time")
	tab.Column("--b", "b")
	tab.Column("--peak-col", "peak")
	if err := tab.Missing(); err == nil || err.Error() != `--time-col: no column "time"; --peak-col: no column "peak" (columns: a, b)` {
		t.Errorf("missing: %v", err)
	}
	if _, err := Open(strings.NewReader("")); err == nil || err.Error() != "the file is empty" {
		t.Errorf("empty file: %v", err)
	}
	tab, _ = Open(strings.NewReader("a,b\n1\n"))
	if _, err := tab.Next(); err == nil || !strings.Contains(err.Error(), "wrong number of fields") {
		t.Errorf("a ragged row: %v", err)
	}
	tab, _ = Open(strings.NewReader("a,b\n"))
	tab.Require("--time-col", "", false)
	tab.Require("--features", "", true)
	tab.Column("", "c")
	if err := tab.Missing(); err == nil || err.Error() != `--time-col is required; --features: an empty column name; no column "c" (columns: a, b)` {
		t.Errorf("required: %v", err)
	}
}

// Lines are the file's: a blank line and a quoted field over two lines
// count, a byte order mark does not name a column.
func TestTableLines(t *testing.T) {
	t.Parallel()
	tab, err := Open(strings.NewReader("\ufeff\"a\",b\n1,2\n\n3,\"x\ny\"\n4,z\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := tab.Column("a", "a"), tab.Column("b", "b")
	if err := tab.Missing(); err != nil {
		t.Fatal(err)
	}
	var lines, rows []int
	var last error
	for {
		ok, err := tab.Next()
		if err != nil || !ok {
			break
		}
		lines, rows = append(lines, tab.Line()), append(rows, tab.Row())
		_, last = tab.Float(b)
		_ = a
	}
	if fmt.Sprint(lines) != "[2 4 6]" || fmt.Sprint(rows) != "[1 2 3]" {
		t.Errorf("lines %v, rows %v; want [2 4 6], [1 2 3]", lines, rows)
	}
	if last == nil || last.Error() != `line 6 column b: "z" is not a number` {
		t.Errorf("error %v", last)
	}
	if err := tab.Errorf(-1, "bad row"); err.Error() != "line 6: bad row" {
		t.Errorf("row error %v", err)
	}
}
