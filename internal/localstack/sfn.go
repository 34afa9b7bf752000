package localstack

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// SFNServer speaks the Step Functions JSON protocol for the task token
// callbacks: SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat. It
// records every call; a token that was completed answers every later call
// with TaskTimedOut, as Step Functions does, and a token it was not told
// of with TaskDoesNotExist.
type SFNServer struct {
	// Endpoint is the server's URL, for AWS_ENDPOINT_URL_SFN.
	Endpoint string

	http *httpServer

	mu     sync.Mutex
	tokens map[string]bool // token -> completed
	calls  []Callback
}

// Callback is one call the server received.
type Callback struct {
	// Action is SendTaskSuccess, SendTaskFailure or SendTaskHeartbeat.
	Action string
	Token  string
	// Output (success), Error and Cause (failure) as sent.
	Output, Error, Cause string
	// Accepted is false when the server answered with an error.
	Accepted bool
}

// StartSFN starts a Step Functions server on 127.0.0.1:port (zero picks a
// free port).
func StartSFN(port int) (*SFNServer, error) {
	s := &SFNServer{tokens: map[string]bool{}}
	var err error
	if s.http, err = serveHTTP("Step Functions", port, http.HandlerFunc(s.handle)); err != nil {
		return nil, err
	}
	s.Endpoint = s.http.endpoint
	return s, nil
}

// Stop stops the server.
func (s *SFNServer) Stop() { s.http.stop() }

// Issue makes a task token the server accepts callbacks for, as a state
// with .waitForTaskToken does.
func (s *SFNServer) Issue(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = false
}

// Calls returns the calls made with a token, in order.
func (s *SFNServer) Calls(token string) []Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Callback
	for _, c := range s.calls {
		if c.Token == token {
			out = append(out, c)
		}
	}
	return out
}

func (s *SFNServer) fail(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.swf.service.v2.model#" + code, "message": msg})
}

func (s *SFNServer) handle(w http.ResponseWriter, r *http.Request) {
	action, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
	if !ok {
		s.fail(w, "UnknownOperationException", "no X-Amz-Target")
		return
	}
	var in struct {
		TaskToken string `json:"taskToken"`
		Output    string `json:"output"`
		Error     string `json:"error"`
		Cause     string `json:"cause"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		s.fail(w, "SerializationException", err.Error())
		return
	}
	call := Callback{Action: action, Token: in.TaskToken, Output: in.Output, Error: in.Error, Cause: in.Cause}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.calls = append(s.calls, call) }()
	completed, known := s.tokens[in.TaskToken]
	switch {
	case action != "SendTaskSuccess" && action != "SendTaskFailure" && action != "SendTaskHeartbeat":
		s.fail(w, "UnknownOperationException", "unsupported operation "+action)
		return
	case !known:
		s.fail(w, "TaskDoesNotExist", "Task does not exist anymore")
		return
	case completed:
		s.fail(w, "TaskTimedOut", "Task Timed Out")
		return
	case action == "SendTaskSuccess" && !json.Valid([]byte(in.Output)):
		s.fail(w, "InvalidOutput", "the output is not JSON")
		return
	}
	if action != "SendTaskHeartbeat" {
		s.tokens[in.TaskToken] = true
	}
	call.Accepted = true
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write([]byte("{}"))
}
