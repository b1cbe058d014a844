// The operator targets Node 24; a run on an older Node proves nothing about it.
export default function setup(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) {
    throw new Error(
      `tests run on Node ${process.version}, but the project needs Node 24: run the install step ` +
        `(npm ci), which puts Node 24 in node_modules/.bin, and start tests with npm test`,
    );
  }
}
