/** Unit tests of the plugin's data layer (plain TypeScript: no DOM, no JupyterLab imports). */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/labextension/src'],
  testRegex: '/__tests__/.*\\.spec\\.ts$',
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: { module: 'commonjs', types: ['jest'] } }]
  }
};
