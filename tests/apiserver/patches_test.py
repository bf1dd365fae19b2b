#!/usr/bin/env python3
"""The three patch formats on the cases kubectl and a kubelet send (python3 patches_test.py)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kinds                  # noqa: E402
from patches import PatchError, json_patch, merge_patch, strategic_merge_patch  # noqa: E402

POD = kinds.patch_meta("Pod")
SERVICE = kinds.patch_meta("Service")


class MergePatch(unittest.TestCase):
    def test_rfc7386(self):
        self.assertEqual(merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}),
                         {"a": "z", "c": {"d": "e"}})
        self.assertEqual(merge_patch({"a": [1, 2]}, {"a": [3]}), {"a": [3]})        # lists replaced
        self.assertEqual(merge_patch({"a": 1}, {"b": {"c": None}}), {"a": 1, "b": {}})


class JsonPatch(unittest.TestCase):
    def test_ops(self):
        doc = {"spec": {"http": [{"route": [{"weight": 80}, {"weight": 20}]}]}, "a~b": {"c/d": 1}}
        out = json_patch(doc, [
            {"op": "test", "path": "/spec/http/0/route/0/weight", "value": 80},
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50},
            {"op": "add", "path": "/spec/http/0/route/-", "value": {"weight": 0}},
            {"op": "remove", "path": "/spec/http/0/route/1"},
            {"op": "copy", "from": "/a~0b/c~1d", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"}])
        self.assertEqual(out["spec"]["http"][0]["route"], [{"weight": 50}, {"weight": 0}])
        self.assertEqual(out["moved"], 1)
        self.assertNotIn("copied", out)
        self.assertEqual(doc["spec"]["http"][0]["route"][0]["weight"], 80)     # the input is not touched

    def test_failures(self):
        with self.assertRaises(PatchError):
            json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
        with self.assertRaises(PatchError):
            json_patch({"a": []}, [{"op": "remove", "path": "/a/0"}])
        with self.assertRaises(PatchError):
            json_patch({}, [{"op": "replace", "path": "/missing", "value": 1}])


class StrategicMergePatch(unittest.TestCase):
    def test_containers_merge_by_name_and_ports_by_container_port(self):
        pod = {"spec": {"containers": [
            {"name": "app", "image": "a:1", "ports": [{"containerPort": 8080, "protocol": "TCP"}]},
            {"name": "side", "image": "s:1"}]}}
        patch = {"spec": {"containers": [{"name": "app", "image": "a:2",
                                          "ports": [{"containerPort": 9090}]}]}}
        out = strategic_merge_patch(pod, patch, POD)
        app, side = out["spec"]["containers"]
        self.assertEqual((app["image"], side["image"]), ("a:2", "s:1"))
        self.assertEqual([p["containerPort"] for p in app["ports"]], [8080, 9090])

    def test_kubelet_status_conditions_merge_by_type(self):
        pod = {"status": {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}}
        out = strategic_merge_patch(pod, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, POD)
        self.assertEqual(out["status"]["conditions"], [{"type": "PodScheduled", "status": "True"},
                                                       {"type": "Ready", "status": "False"}])

    def test_apply_directives(self):
        svc = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}],
                        "selector": {"app": "x", "old": "y"}}}
        patch = {"spec": {"$setElementOrder/ports": [{"port": 90}, {"port": 70}],
                          "ports": [{"port": 70, "name": "new"}, {"port": 80, "$patch": "delete"}],
                          "selector": {"old": None}}}
        out = strategic_merge_patch(svc, patch, SERVICE)
        self.assertEqual(out["spec"]["ports"], [{"name": "grpc", "port": 90}, {"port": 70, "name": "new"}])
        self.assertEqual(out["spec"]["selector"], {"app": "x"})

    def test_replace_retain_keys_and_primitive_lists(self):
        obj = {"metadata": {"finalizers": ["a", "b"]},
               "spec": {"volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "x"}]}}
        patch = {"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                 "spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"],
                                       "hostPath": {"path": "/tmp"}}],
                          "tolerations": [{"key": "y"}]}}
        out = strategic_merge_patch(obj, patch, POD)
        self.assertEqual(out["metadata"]["finalizers"], ["b", "c"])
        self.assertEqual(out["spec"]["volumes"], [{"name": "v", "hostPath": {"path": "/tmp"}}])
        self.assertEqual(out["spec"]["tolerations"], [{"key": "y"}])              # no merge key: replaced
        out = strategic_merge_patch(obj, {"spec": {"$patch": "replace", "tolerations": []}}, POD)
        self.assertEqual(out["spec"], {"tolerations": []})

    def test_missing_merge_key(self):
        with self.assertRaises(PatchError):
            strategic_merge_patch({"spec": {"containers": []}}, {"spec": {"containers": [{"image": "x"}]}}, POD)


if __name__ == "__main__":
    unittest.main()
