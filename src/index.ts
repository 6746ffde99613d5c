/** weitiao's library API: the same jobs as the CLI, typed. */
export { train, type TrainOptions, type TrainOutput } from "./api/train.js";
export { evaluateFile, loadModel, predict, type LoadedModel, type Prediction, type TextInput, type PredictOptions } from "./api/predict.js";
export { BertTokenizer, type Encoding, type EncodeOptions } from "./tokenizer/index.js";
export { TaskModel, type ModelInput } from "./model/task-model.js";
/** @deprecated the task model of every family and head is TaskModel; this name stays for code written against 0.1. */
export { TaskModel as BertForSequenceClassification } from "./model/task-model.js";
export { loadModelFromDir, saveModel } from "./io/checkpoint.js";
export { Trainer, evaluate, type TrainingArgs } from "./train/trainer.js";
export { getBackend, tsBackend, type Backend } from "./backend/index.js";
export { WeitiaoError } from "./util/errors.js";
export { fillMask, type FillMaskCandidate, type FillMaskOptions, type FillMaskResult } from "./api/fill-mask.js";
export { maskExample, maskingSpec, type MaskingSpec } from "./data/mlm.js";
