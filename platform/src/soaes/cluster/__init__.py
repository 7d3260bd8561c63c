"""Cluster operations: a local multi-node Ray cluster, job submission, manifests, metrics.

``soaes cluster up|down|status`` runs a loopback multi-node cluster on this machine,
``soaes submit`` sends a pipeline to any Ray cluster through the Job Submission API and
``soaes jobs`` lists, tails and stops jobs. The cloud and Kubernetes files live in
``cluster/`` at the repository root and are checked by :mod:`soaes.cluster.manifests`.
"""
