// What the API server's authorizer will see in a request: verb, API group and resource
// (with subresource). The operator counts its requests by these, so its metrics speak the
// language of RBAC rules — and a test can hold the chart's grants against what is used.
export interface RequestInfo {
  /** Usually one; a server-side apply that created its object (201) was authorized as patch and create. */
  verbs: string[];
  group: string;
  /** `plural` or `plural/subresource`. */
  resource: string;
}

const verbs: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch' };

export function requestInfo(method: string, path: string, status = 0): RequestInfo {
  const [pathname = '', query = ''] = path.split('?');
  const parts = pathname.split('/').filter(Boolean);
  // /api/v1/... is the core group; /apis/<group>/<version>/... any other.
  const group = parts[0] === 'apis' ? (parts[1] ?? '') : '';
  let rest = parts.slice(parts[0] === 'apis' ? 3 : 2);
  // namespaces/<ns>/<resource>... is namespaced; namespaces[/<name>] is the Namespace itself.
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  const [plural = '', name, subresource] = rest;
  const resource = subresource ? `${plural}/${subresource}` : plural;
  const watching = new URLSearchParams(query).get('watch');
  const verb =
    method === 'GET' ? (name ? 'get' : watching === 'true' || watching === '1' ? 'watch' : 'list')
    : method === 'DELETE' ? (name ? 'delete' : 'deletecollection')
    : (verbs[method] ?? method.toLowerCase());
  return { verbs: verb === 'patch' && status === 201 ? ['patch', 'create'] : [verb], group, resource };
}
