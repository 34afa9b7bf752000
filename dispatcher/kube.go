package dispatcher

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// scaledJobs is KEDA's ScaledJob resource.
var scaledJobs = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledjobs"}
