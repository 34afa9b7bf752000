package localstack

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"
)

// SNSServer speaks the SNS query protocol for what jobfleet uses: topics
// (CreateTopic) and Publish with message attributes. It keeps every
// message published, and delivers each to the SQS queues subscribed to its
// topic, raw (the message as the body, its attributes as SQS attributes),
// as an SNS subscription with raw message delivery does.
type SNSServer struct {
	// Endpoint is the server's URL, for AWS_ENDPOINT_URL_SNS.
	Endpoint string

	http *httpServer

	mu        sync.Mutex
	topics    map[string]bool
	published []Published
	subs      map[string][]string // topic ARN -> SQS queue URLs
	sqs       *sqs.Client
}

// Published is one message published to a topic.
type Published struct {
	MessageID  string
	Topic      string
	Message    string
	Attributes map[string]string
}

// SNSAccount is the account of the topics the server makes.
const SNSAccount = "000000000000"

// StartSNS starts an SNS server on 127.0.0.1:port (zero picks a free
// port). deliver, when set, is the SQS client that delivers to subscribed
// queues.
func StartSNS(port int, deliver *sqs.Client) (*SNSServer, error) {
	s := &SNSServer{topics: map[string]bool{}, subs: map[string][]string{}, sqs: deliver}
	var err error
	if s.http, err = serveHTTP("SNS", port, http.HandlerFunc(s.handle)); err != nil {
		return nil, err
	}
	s.Endpoint = s.http.endpoint
	return s, nil
}

// Stop stops the server.
func (s *SNSServer) Stop() { s.http.stop() }

// CreateTopic makes a topic and returns its ARN.
func (s *SNSServer) CreateTopic(name string) string {
	arn := "arn:aws:sns:us-east-1:" + SNSAccount + ":" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topics[arn] = true
	return arn
}

// Subscribe delivers the topic's messages to an SQS queue.
func (s *SNSServer) Subscribe(topic, queueURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[topic] = append(s.subs[topic], queueURL)
}

// Published returns the messages published to a topic, in order.
func (s *SNSServer) Published(topic string) []Published {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Published
	for _, p := range s.published {
		if p.Topic == topic {
			out = append(out, p)
		}
	}
	return out
}

type snsError struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func (s *SNSServer) fail(w http.ResponseWriter, status int, code, msg string) {
	var e snsError
	e.Error.Type, e.Error.Code, e.Error.Message, e.RequestID = "Sender", code, msg, uuid.NewString()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(e)
}

func (s *SNSServer) handle(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.fail(w, http.StatusBadRequest, "InvalidParameter", err.Error())
		return
	}
	switch r.PostForm.Get("Action") {
	case "CreateTopic":
		arn := s.CreateTopic(r.PostForm.Get("Name"))
		s.reply(w, "CreateTopic", "<TopicArn>"+arn+"</TopicArn>")
	case "Publish":
		s.publish(w, r)
	default:
		s.fail(w, http.StatusBadRequest, "InvalidAction", "unsupported action "+r.PostForm.Get("Action"))
	}
}

func (s *SNSServer) reply(w http.ResponseWriter, action, result string) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%sResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		action, action, result, action, uuid.NewString(), action)
}

func (s *SNSServer) publish(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	topic, msg := f.Get("TopicArn"), f.Get("Message")
	s.mu.Lock()
	known := s.topics[topic]
	s.mu.Unlock()
	switch {
	case !known:
		s.fail(w, http.StatusNotFound, "NotFound", "Topic does not exist")
		return
	case msg == "":
		s.fail(w, http.StatusBadRequest, "InvalidParameter", "Empty message")
		return
	case len(msg) > 256<<10:
		s.fail(w, http.StatusBadRequest, "InvalidParameter", "Message too long")
		return
	}
	attrs := map[string]string{}
	for i := 1; ; i++ {
		prefix := "MessageAttributes.entry." + strconv.Itoa(i)
		name := f.Get(prefix + ".Name")
		if name == "" {
			break
		}
		if t := f.Get(prefix + ".Value.DataType"); t != "String" {
			s.fail(w, http.StatusBadRequest, "ParameterValueInvalid", "attribute "+name+": unsupported data type "+t)
			return
		}
		attrs[name] = f.Get(prefix + ".Value.StringValue")
	}
	p := Published{MessageID: uuid.NewString(), Topic: topic, Message: msg, Attributes: attrs}
	s.mu.Lock()
	s.published = append(s.published, p)
	queues := slices.Clone(s.subs[topic])
	s.mu.Unlock()
	for _, q := range queues {
		if err := s.deliver(r.Context(), q, p); err != nil {
			s.fail(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
	}
	s.reply(w, "Publish", "<MessageId>"+p.MessageID+"</MessageId>")
}

func (s *SNSServer) deliver(ctx context.Context, queueURL string, p Published) error {
	if s.sqs == nil {
		return fmt.Errorf("no SQS client to deliver to %s", queueURL)
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(p.Message), MessageAttributes: map[string]sqstypes.MessageAttributeValue{}}
	for k, v := range p.Attributes {
		in.MessageAttributes[k] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	_, err := s.sqs.SendMessage(ctx, in)
	if err != nil {
		return fmt.Errorf("delivering to %s: %w", strings.TrimSpace(queueURL), err)
	}
	return nil
}
