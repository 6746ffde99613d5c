/**
 * The field names of HF's TrainingArguments (transformers 5.18, dataclasses.fields) and the script arguments of its
 * run_classification / run_mlm / run_ner examples: in a --config file, the ones weitiao does not implement are listed
 * in one notice and ignored, as a user's HF config file holds many; a key that is neither ours nor one of these is an
 * error naming the file.
 */
export const HF_ARGUMENT_NAMES: ReadonlySet<string> = new Set([
  "accelerator_config", "adam_beta1", "adam_beta2", "adam_epsilon", "auto_find_batch_size",
  "average_tokens_across_devices", "batch_eval_metrics", "bf16", "bf16_full_eval", "cache_dir", "config_name",
  "data_seed", "dataloader_drop_last", "dataloader_in_order", "dataloader_multiprocessing_context",
  "dataloader_num_workers", "dataloader_persistent_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
  "dataset_config_name", "dataset_name", "ddp_backend", "ddp_broadcast_buffers", "ddp_bucket_cap_mb",
  "ddp_find_unused_parameters", "ddp_static_graph", "ddp_timeout", "debug", "deepspeed", "disable_tqdm", "do_eval",
  "do_predict", "do_train", "enable_jit_checkpoint", "eval_accumulation_steps", "eval_delay",
  "eval_do_concat_batches", "eval_on_start", "eval_steps", "eval_strategy", "eval_use_gather_object", "fp16",
  "fp16_full_eval", "fsdp", "fsdp_config", "full_determinism", "gradient_accumulation_steps",
  "gradient_checkpointing", "gradient_checkpointing_kwargs", "greater_is_better", "hub_always_push", "hub_model_id",
  "hub_private_repo", "hub_revision", "hub_strategy", "hub_token", "ignore_data_skip", "ignore_mismatched_sizes",
  "include_for_metrics", "include_num_input_tokens_seen", "label_all_tokens", "label_column_name", "label_names",
  "label_smoothing_factor", "learning_rate", "length_column_name", "liger_kernel_config", "line_by_line",
  "load_best_model_at_end", "local_rank", "log_level", "log_level_replica", "log_on_each_node", "logging_first_step",
  "logging_nan_inf_filter", "logging_steps", "logging_strategy", "low_cpu_mem_usage", "lr_scheduler_kwargs",
  "lr_scheduler_type", "max_eval_samples", "max_grad_norm", "max_predict_samples", "max_seq_length", "max_steps",
  "max_train_samples", "metric_for_best_model", "metric_name", "mlm_probability", "model_name_or_path",
  "model_revision", "neftune_noise_alpha", "num_train_epochs", "optim", "optim_args", "optim_target_modules",
  "output_dir", "overwrite_cache", "pad_to_max_length", "parallelism_config", "per_device_eval_batch_size",
  "per_device_train_batch_size", "prediction_loss_only", "preprocessing_num_workers", "project", "push_to_hub",
  "remove_columns", "remove_splits", "remove_unused_columns", "report_to", "restore_callback_states_from_checkpoint",
  "resume_from_checkpoint", "return_entity_level_metrics", "run_name", "save_on_each_node", "save_only_model",
  "save_steps", "save_strategy", "save_total_limit", "seed", "shuffle_seed", "shuffle_train_dataset",
  "skip_memory_metrics", "streaming", "task_name", "test_file", "text_column_delimiter", "text_column_names", "tf32",
  "token", "tokenizer_name", "torch_compile", "torch_compile_backend", "torch_compile_mode",
  "torch_empty_cache_steps", "trackio_bucket_id", "trackio_space_id", "trackio_static_space_id", "train_file",
  "train_sampling_strategy", "trust_remote_code", "use_cache", "use_cpu", "use_fast_tokenizer", "use_liger_kernel",
  "validation_file", "validation_split_percentage", "warmup_steps", "weight_decay",
]);
