// SPDX-License-Identifier: MIT
// Holds Kubernetes manifests to the API's schema without a cluster: kubernetes-models' validators
// (types, required fields, enums, formats) and the field lists of @kubernetes/client-node's
// generated models (no unknown field, as the API server's strict field validation refuses them).
// Every error is printed as FILE: Kind namespace/name: field.path: what is wrong; exit 1 if any.
//   node check.js FILE...          check
//   node check.js --json FILE      the objects as JSON, one array (for tests reading the manifest)
"use strict";
const fs = require("fs");
const yaml = require("js-yaml");
const k8s = require("@kubernetes/client-node");

function models(apiVersion) {
	const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : [null, apiVersion];
	try {
		return require(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`);
	} catch (e) {
		return null;
	}
}

// "data/spec/template/spec/containers/0/ports/0/containerPort" -> "spec.template.spec.containers[0].ports[0].containerPort"
function fieldPath(p) {
	return p.replace(/^data\/?/, "").split("/").filter((s) => s !== "")
		.reduce((acc, s) => (/^\d+$/.test(s) ? `${acc}[${s}]` : acc ? `${acc}.${s}` : s), "");
}

function schemaErrors(doc) {
	const Cls = (models(doc.apiVersion) || {})[doc.kind];
	if (!Cls)
		return [`apiVersion ${doc.apiVersion} kind ${doc.kind}: not a kind the Kubernetes API serves`];
	try {
		new Cls(doc).validate();
		return [];
	} catch (e) {
		return String(e.message).split(", ").map((m) => {
			const at = m.match(/^(data\S*) (.*)$/);
			return at ? `${fieldPath(at[1]) || "(the object)"}: ${at[2]}` : m;
		});
	}
}

// Unknown fields, walking the object along client-node's attribute type maps.
function unknownFields(value, type, path, out) {
	if (value === null || value === undefined)
		return;
	const array = type.match(/^Array<(.*)>$/);
	if (array) {
		if (Array.isArray(value))
			value.forEach((v, i) => unknownFields(v, array[1], `${path}[${i}]`, out));
		return;
	}
	const cls = k8s[type];
	if (!cls || typeof cls.getAttributeTypeMap !== "function" || typeof value !== "object" || Array.isArray(value))
		return;
	const attrs = cls.getAttributeTypeMap();
	for (const key of Object.keys(value)) {
		const attr = attrs.find((a) => a.baseName === key);
		const at = path ? `${path}.${key}` : key;
		if (!attr) {
			const near = attrs.map((a) => a.baseName).find((n) => n.toLowerCase() === key.toLowerCase() ||
				distance(n, key) <= 2);
			out.push(`${at}: unknown field "${key}"${near ? ` (did you mean "${near}"?)` : ""}`);
			continue;
		}
		unknownFields(value[key], attr.type, at, out);
	}
}

function distance(a, b) {
	const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
	for (let j = 1; j <= b.length; j++)
		d[0][j] = j;
	for (let i = 1; i <= a.length; i++)
		for (let j = 1; j <= b.length; j++)
			d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
	return d[a.length][b.length];
}

function modelType(doc) {
	const version = doc.apiVersion.split("/").pop();
	return version.charAt(0).toUpperCase() + version.slice(1) + doc.kind;
}

const args = process.argv.slice(2);
const json = args[0] === "--json";
const files = json ? args.slice(1) : args;
if (!files.length) {
	console.error("usage: node check.js [--json] FILE...");
	process.exit(2);
}
let failed = 0;
const all = [];
for (const file of files) {
	let docs;
	try {
		docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d !== null && d !== undefined);
	} catch (e) {
		console.log(`${file}: ${e.message.split("\n")[0]}`);
		failed++;
		continue;
	}
	for (const doc of docs) {
		all.push(doc);
		const name = `${doc.kind} ${doc.metadata && doc.metadata.namespace ? doc.metadata.namespace + "/" : ""}${
			doc.metadata && doc.metadata.name}`;
		const errors = schemaErrors(doc);
		unknownFields(doc, modelType(doc), "", errors);
		for (const e of errors)
			console.log(`${file}: ${name}: ${e}`);
		failed += errors.length;
		if (!json && !errors.length)
			console.log(`ok ${file}: ${name}`);
	}
}
if (json)
	console.log(JSON.stringify(all));
process.exit(failed ? 1 : 0);
