// Package logging sets up jobfleet's zerolog loggers: JSON lines by default,
// human-readable output when writing to a terminal.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"
)

// Formats of log output.
const (
	FormatAuto    = "auto"
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Config selects the level and format of logs.
type Config struct {
	// Level is a zerolog level name: debug, info, warn, error.
	Level string
	// Format is auto (console on a terminal, JSON otherwise), json or
	// console.
	Format string
}

// New returns a logger writing to w.
func New(w io.Writer, cfg Config) (zerolog.Logger, error) {
	level := zerolog.InfoLevel
	if cfg.Level != "" {
		l, err := zerolog.ParseLevel(cfg.Level)
		if err != nil {
			return zerolog.Nop(), fmt.Errorf("log level %q: %w", cfg.Level, err)
		}
		level = l
	}
	switch cfg.Format {
	case FormatConsole:
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	case FormatAuto, "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
		}
	case FormatJSON:
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want auto, json or console", cfg.Format)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
