// The few fengari (Lua 5.3 in JavaScript) calls the Argo CD health-check test makes.
declare module 'fengari' {
  export const lua: {
    lua_tojsstring(L: unknown, index: number): string;
    LUA_OK: number;
  };
  export const lauxlib: {
    luaL_newstate(): unknown;
    luaL_dostring(L: unknown, code: Uint8Array): number;
  };
  export const lualib: { luaL_openlibs(L: unknown): void };
  export function to_luastring(s: string): Uint8Array;
}
